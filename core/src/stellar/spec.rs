//! A Soroban contract spec as upstream configs carry it: the JSON form of `ScSpecEntry` values
//! (`{"function_v0": {...}}`, `{"event_v0": {...}}` with Protocol-23 event specs, UDTs).

use std::collections::HashMap;

use serde_json::Value as Json;

/// A function of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: String,
    /// `(name, type)` with types formatted like `Address`, `I128`, `Map<String,String>`.
    pub inputs: Vec<(String, String)>,
}

/// Where an event parameter is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamLocation {
    TopicList,
    Data,
}

/// How an event's data holds its data parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    SingleValue,
    Vec,
    Map,
}

/// A Protocol-23 event spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub name: String,
    pub prefix_topics: Vec<String>,
    /// `(name, type, location)` in declaration order.
    pub params: Vec<(String, String, ParamLocation)>,
    pub data_format: DataFormat,
}

/// A compiled contract spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContractSpec {
    pub functions: HashMap<String, FunctionSpec>,
    pub events: Vec<EventSpec>,
}

/// Why a contract spec could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a Soroban contract spec (an array of entries such as {{\"function_v0\": {{...}}}}): {0}")]
pub struct SpecError(pub String);

/// Formats a `ScSpecTypeDef` JSON value: `"i128"` → `I128`, `{"map": {...}}` → `Map<K,V>`, …
pub fn format_type(t: &Json) -> Result<String, SpecError> {
    match t {
        Json::String(s) => Ok(match s.as_str() {
            "u32" => "U32".into(),
            "i32" => "I32".into(),
            "u64" => "U64".into(),
            "i64" => "I64".into(),
            "u128" => "U128".into(),
            "i128" => "I128".into(),
            "u256" => "U256".into(),
            "i256" => "I256".into(),
            "muxed_address" => "MuxedAddress".into(),
            other => {
                let mut c = other.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().chain(c).collect(),
                    None => return Err(SpecError("an empty type".into())),
                }
            }
        }),
        Json::Object(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            let field =
                |name: &str| v.get(name).ok_or_else(|| SpecError(format!("type `{k}` without `{name}`")));
            Ok(match k.as_str() {
                "option" => format!("Option<{}>", format_type(field("value_type")?)?),
                "result" => format!(
                    "Result<{},{}>",
                    format_type(field("ok_type")?)?,
                    format_type(field("error_type")?)?
                ),
                "vec" => format!("Vec<{}>", format_type(field("element_type")?)?),
                "map" => format!(
                    "Map<{},{}>",
                    format_type(field("key_type")?)?,
                    format_type(field("value_type")?)?
                ),
                "tuple" => {
                    let types = field("value_types")?
                        .as_array()
                        .ok_or_else(|| SpecError("tuple value_types is not an array".into()))?;
                    let parts = types.iter().map(format_type).collect::<Result<Vec<_>, _>>()?;
                    format!("Tuple<{}>", parts.join(","))
                }
                "bytes_n" => format!("Bytes{}", field("n")?), // upstream's name: BytesN<32> is Bytes32
                "udt" => field("name")?
                    .as_str()
                    .ok_or_else(|| SpecError("udt name is not a string".into()))?
                    .to_string(),
                other => return Err(SpecError(format!("unknown type `{other}`"))),
            })
        }
        other => Err(SpecError(format!("unexpected type {other}"))),
    }
}

/// Whether a runtime value kind (`Map`, `Vec`, `I128`, …) fits a spec type, leniently as
/// upstream: `Map<…>` takes a Map, `Vec<…>`/`Tuple<…>` a Vec, `BytesN<…>` Bytes, `Option<T>` Void
/// or T, user types and `Val` anything.
pub fn kind_fits(spec_type: &str, runtime_kind: &str) -> bool {
    let base = spec_type.split('<').next().unwrap_or(spec_type);
    if fixed_bytes_len(spec_type).is_some() {
        return runtime_kind == "Bytes";
    }
    match base {
        "Map" => runtime_kind == "Map",
        "Vec" | "Tuple" => runtime_kind == "Vec",
        "BytesN" => runtime_kind == "Bytes",
        "Option" => {
            runtime_kind == "Void"
                || spec_type
                    .strip_prefix("Option<")
                    .and_then(|s| s.strip_suffix('>'))
                    .is_some_and(|inner| kind_fits(inner, runtime_kind))
        }
        "Val" => true,
        "MuxedAddress" => runtime_kind == "Address",
        b if b.chars().next().is_some_and(|c| c.is_uppercase()) && !is_builtin(b) => true, // a user-defined type
        b => b.eq_ignore_ascii_case(runtime_kind),
    }
}

/// `n` of a fixed-length bytes type, in upstream's spelling (`Bytes32`) or ours (`BytesN<32>`).
pub fn fixed_bytes_len(spec_type: &str) -> Option<u32> {
    let t = spec_type.trim();
    let digits = t
        .strip_prefix("BytesN<")
        .and_then(|r| r.strip_suffix('>'))
        .or_else(|| t.strip_prefix("Bytes"))
        .or_else(|| t.strip_prefix("bytesn<").and_then(|r| r.strip_suffix('>')))
        .or_else(|| t.strip_prefix("bytes"))?;
    digits.trim().parse().ok()
}

/// The kind a monitor sees for an argument the spec types as `spec_type`: upstream's name for
/// fixed-length bytes (`Bytes32`), otherwise the value's own kind.
pub fn arg_kind(spec_type: Option<&str>, runtime_kind: &str) -> String {
    match spec_type.and_then(fixed_bytes_len) {
        Some(n) if runtime_kind == "Bytes" => format!("Bytes{n}"),
        _ => runtime_kind.to_string(),
    }
}

/// A Stellar signature as conditions and calls are compared: without whitespace, lower-case, and
/// fixed-length bytes in one spelling (`BytesN<32>` and upstream's `Bytes32` are the same type).
pub fn normalize_signature(signature: &str) -> String {
    let s = crate::signature::normalize_signature(signature);
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(at) = rest.find("bytesn<") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "bytesn<".len()..];
        match after.find('>') {
            Some(close) if after[..close].bytes().all(|b| b.is_ascii_digit()) && close > 0 => {
                out.push_str("bytes");
                out.push_str(&after[..close]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str("bytesn<");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_builtin(t: &str) -> bool {
    matches!(
        t,
        "Bool"
            | "Void"
            | "Error"
            | "U32"
            | "I32"
            | "U64"
            | "I64"
            | "Timepoint"
            | "Duration"
            | "U128"
            | "I128"
            | "U256"
            | "I256"
            | "Bytes"
            | "String"
            | "Symbol"
            | "Address"
            | "Result"
    )
}

fn str_of<'a>(v: &'a Json, key: &str, what: &str) -> Result<&'a str, SpecError> {
    v.get(key).and_then(Json::as_str).ok_or_else(|| SpecError(format!("{what} without a `{key}` string")))
}

impl ContractSpec {
    /// Reads the JSON array of spec entries. Entry kinds other than functions and events (UDTs,
    /// errors) are accepted and not needed for matching.
    pub fn from_json(spec: &Json) -> Result<Self, SpecError> {
        let entries = spec.as_array().ok_or_else(|| SpecError("not an array".into()))?;
        let mut out = ContractSpec::default();
        for entry in entries {
            let Some(obj) = entry.as_object() else {
                return Err(SpecError(format!("entry {entry} is not an object")));
            };
            if let Some(f) = obj.get("function_v0") {
                let name = str_of(f, "name", "function_v0")?.to_string();
                let inputs = f
                    .get("inputs")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        Ok((
                            str_of(i, "name", "function input")?.to_string(),
                            format_type(i.get("type_").unwrap_or(&Json::Null))?,
                        ))
                    })
                    .collect::<Result<Vec<_>, SpecError>>()?;
                out.functions.insert(name.clone(), FunctionSpec { name, inputs });
            } else if let Some(e) = obj.get("event_v0") {
                let name = str_of(e, "name", "event_v0")?.to_string();
                let prefix_topics = e
                    .get("prefix_topics")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect();
                let params = e
                    .get("params")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let location = match p.get("location").and_then(Json::as_str) {
                            Some("topic_list") => ParamLocation::TopicList,
                            _ => ParamLocation::Data,
                        };
                        Ok((
                            str_of(p, "name", "event param")?.to_string(),
                            format_type(p.get("type_").unwrap_or(&Json::Null))?,
                            location,
                        ))
                    })
                    .collect::<Result<Vec<_>, SpecError>>()?;
                let data_format = match e.get("data_format").and_then(Json::as_str) {
                    Some("vec") => DataFormat::Vec,
                    Some("map") => DataFormat::Map,
                    _ => DataFormat::SingleValue,
                };
                out.events.push(EventSpec { name, prefix_topics, params, data_format });
            }
        }
        Ok(out)
    }

    /// The event spec for an event whose leading text topics are `texts`: the one whose prefix
    /// topics are a prefix of them, else one whose (snake_case) name is the first topic.
    pub fn event_for(&self, texts: &[String]) -> Option<&EventSpec> {
        self.events
            .iter()
            .filter(|e| {
                !e.prefix_topics.is_empty()
                    && texts.len() >= e.prefix_topics.len()
                    && e.prefix_topics[..] == texts[..e.prefix_topics.len()]
            })
            .max_by_key(|e| e.prefix_topics.len())
            .or_else(|| {
                let first = texts.first()?;
                self.events.iter().find(|e| {
                    e.prefix_topics.is_empty() && (&e.name == first || &snake_case(&e.name) == first)
                })
            })
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_types_like_signatures_use_them() {
        assert_eq!(format_type(&json!("i128")).unwrap(), "I128");
        assert_eq!(format_type(&json!("address")).unwrap(), "Address");
        assert_eq!(
            format_type(&json!({"map": {"key_type": "string", "value_type": "string"}})).unwrap(),
            "Map<String,String>"
        );
        assert_eq!(
            format_type(&json!({"vec": {"element_type": {"udt": {"name": "User"}}}})).unwrap(),
            "Vec<User>"
        );
        assert_eq!(format_type(&json!({"bytes_n": {"n": 32}})).unwrap(), "Bytes32", "upstream's name");
        assert_eq!(
            format_type(&json!({"tuple": {"value_types": ["u32", "symbol"]}})).unwrap(),
            "Tuple<U32,Symbol>"
        );
        assert!(format_type(&json!({"nope": {}})).is_err());
    }

    #[test]
    fn lenient_kind_matching() {
        assert!(kind_fits("Map<String,String>", "Map"));
        assert!(kind_fits("Vec<Address>", "Vec"));
        assert!(kind_fits("Option<U32>", "Void") && kind_fits("Option<U32>", "U32"));
        assert!(kind_fits("User", "Map"));
        assert!(kind_fits("I128", "I128"));
        assert!(!kind_fits("I128", "U128"));
        assert!(kind_fits("Bytes32", "Bytes") && kind_fits("BytesN<128>", "Bytes"));
        assert!(!kind_fits("Bytes32", "String"));
    }

    #[test]
    fn fixed_length_bytes_have_two_spellings_and_one_meaning() {
        assert_eq!(
            normalize_signature("contract_called(Address, String,String, BytesN<32>, BytesN<128>)"),
            normalize_signature("contract_called(Address,String,String,Bytes32,Bytes128)")
        );
        assert_eq!(normalize_signature("f(Bytes, BytesN<x>)"), "f(bytes,bytesn<x>)");
        assert_eq!(fixed_bytes_len("Bytes32"), Some(32));
        assert_eq!(fixed_bytes_len("BytesN<128>"), Some(128));
        assert_eq!(fixed_bytes_len("Bytes"), None);
        assert_eq!(arg_kind(Some("Bytes32"), "Bytes"), "Bytes32");
        assert_eq!(arg_kind(Some("Map<String,String>"), "Map"), "Map");
        assert_eq!(arg_kind(None, "Bytes"), "Bytes");
    }
}

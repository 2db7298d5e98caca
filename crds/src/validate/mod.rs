//! Offline validation of a chainwatch object against its CRD, as the API server would do it: the
//! structural schema (types, required fields, enums, bounds, patterns, list uniqueness, unknown
//! fields) and the CEL rules. One source of truth: the schema generated from the Rust types. CEL
//! rules are evaluated by Rust implementations looked up by their exact text (see [`cel`]); a
//! test fails if the CRDs carry a rule without one.
//!
//! Messages use the API server's phrasing (`spec.networks in body should have at least 1 items`,
//! `Unsupported value: "x"`, the rule's own message), so a user sees the same words from
//! `chainwatch check` and from `kubectl apply`.

pub mod cel;

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

/// A problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, e.g. `spec.rpc[0].url`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The openAPIV3Schema of each chainwatch kind.
fn schemas() -> &'static HashMap<String, Value> {
    static SCHEMAS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crate::crds()
            .into_iter()
            .map(|(_, crd)| {
                let v = serde_json::to_value(&crd).expect("a CRD always serializes");
                let kind = v["spec"]["names"]["kind"].as_str().unwrap_or_default().to_string();
                (kind, v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone())
            })
            .collect()
    })
}

/// The kinds this module validates.
pub fn kinds() -> Vec<String> {
    let mut k: Vec<String> = schemas().keys().cloned().collect();
    k.sort();
    k
}

/// Every CEL rule text in the CRDs.
pub fn rules() -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                    out.extend(rules.iter().filter_map(|r| r["rule"].as_str().map(str::to_string)));
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    schemas().values().for_each(|s| walk(s, &mut out));
    out
}

/// Validates `obj` (a whole object: apiVersion, kind, metadata, spec) against the CRD of its kind.
/// Returns `None` if `kind` is not a chainwatch kind.
pub fn validate(obj: &Value) -> Option<Vec<Violation>> {
    let kind = obj.get("kind")?.as_str()?;
    let schema = schemas().get(kind)?;
    let mut out = Vec::new();
    if obj.get("apiVersion").and_then(Value::as_str) != Some(&format!("{}/{}", crate::GROUP, crate::VERSION))
    {
        out.push(Violation {
            field: "apiVersion".into(),
            message: format!("must be {}/{} for kind {kind}", crate::GROUP, crate::VERSION),
        });
    }
    metadata(obj.get("metadata"), &mut out);
    for key in ["spec", "status"] {
        if let (Some(s), Some(v)) = (schema["properties"].get(key), obj.get(key)) {
            walk(s, v, key, &mut out);
        }
    }
    if schema["required"].as_array().is_some_and(|r| r.iter().any(|k| k == "spec"))
        && obj.get("spec").is_none()
    {
        out.push(Violation { field: "spec".into(), message: "Required value".into() });
    }
    Some(out)
}

fn metadata(meta: Option<&Value>, out: &mut Vec<Violation>) {
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    match name {
        None => out.push(Violation { field: "metadata.name".into(), message: "Required value: name is required".into() }),
        Some(n) if !dns_subdomain(n) => out.push(Violation {
            field: "metadata.name".into(),
            message: format!(
                "Invalid value: \"{n}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        }),
        Some(_) => {}
    }
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && s.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(expected: &str, v: &Value) -> bool {
    match expected {
        "number" => v.is_number(),
        other => type_name(v) == other,
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn walk(schema: &Value, v: &Value, path: &str, out: &mut Vec<Violation>) {
    if v.is_null() {
        return; // an absent optional field
    }
    let push =
        |out: &mut Vec<Violation>, message: String| out.push(Violation { field: path.to_string(), message });
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool).unwrap_or(false);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            push(
                out,
                format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer-or-string",
                    type_name(v)
                ),
            );
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(t, v)
    {
        push(
            out,
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {t}: \"{}\"",
                type_name(v),
                type_name(v)
            ),
        );
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        push(out, format!("Unsupported value: {v}: supported values: {}", list.join(", ")));
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(num), num(v))
        && x < min
    {
        push(
            out,
            format!(
                "Invalid value: {}: {path} in body should be greater than or equal to {}",
                fmt_num(v),
                fmt_num(&schema["minimum"])
            ),
        );
    }
    if let (Some(max), Some(x)) = (schema.get("maximum").and_then(num), num(v))
        && x > max
    {
        push(
            out,
            format!(
                "Invalid value: {}: {path} in body should be less than or equal to {}",
                fmt_num(v),
                fmt_num(&schema["maximum"])
            ),
        );
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
            push(out, format!("Invalid value: \"{s}\": {path} in body should be at least {min} chars long"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
            push(out, format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
        {
            push(out, format!("Invalid value: \"{s}\": {path} in body should match '{p}'"));
        }
    }
    match v {
        Value::Object(map) => {
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if map.get(r).is_none_or(Value::is_null) {
                    out.push(Violation { field: format!("{path}.{r}"), message: "Required value".into() });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool).unwrap_or(false);
            for (k, x) in map {
                let child = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => walk(s, x, &child, out),
                    (None, Some(s)) if s.is_object() => walk(s, x, &child, out),
                    (None, Some(Value::Bool(true))) => {}
                    _ if preserve => {}
                    _ => out.push(Violation { field: child, message: format!("unknown field \"{k}\"") }),
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64).filter(|m| n < *m) {
                push(out, format!("Invalid value: {n}: {path} in body should have at least {min} items"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64).filter(|m| n > *m) {
                push(out, format!("Too many: {n}: must have at most {max} items"));
            }
            if let Some(s) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    walk(s, x, &format!("{path}[{i}]"), out);
                }
            }
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for (i, x) in items.iter().enumerate() {
                        if items[..i].contains(x) {
                            out.push(Violation {
                                field: format!("{path}[{i}]"),
                                message: format!("Duplicate value: {x}"),
                            });
                        }
                    }
                }
                Some("map") => {
                    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let key_of = |x: &Value| {
                        keys.iter().map(|k| x.get(*k).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()
                    };
                    for (i, x) in items.iter().enumerate() {
                        if items[..i].iter().any(|y| key_of(y) == key_of(x)) {
                            out.push(Violation {
                                field: format!("{path}[{i}]"),
                                message: format!("Duplicate value: {}", Value::Array(key_of(x))),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    for rule in schema.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
        let text = rule["rule"].as_str().unwrap_or_default();
        match cel::eval(text, v) {
            Some(true) => {}
            Some(false) => push(
                out,
                rule["message"].as_str().map_or_else(|| format!("failed rule: {text}"), str::to_string),
            ),
            None => push(out, format!("cannot evaluate rule `{text}` offline (please report this)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rule_in_the_crds_is_implemented() {
        let missing: Vec<String> = rules().into_iter().filter(|r| !cel::implemented(r)).collect();
        assert!(
            missing.is_empty(),
            "CEL rules without an offline implementation in crds/src/validate/cel.rs: {missing:#?}"
        );
    }

    fn network(spec: Value) -> Value {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "eth"}, "spec": spec})
    }

    #[test]
    fn structural_and_rule_violations_name_the_field() {
        let ok = network(json!({"type": "evm", "rpc": [{"url": "https://x"}]}));
        assert_eq!(validate(&ok), Some(vec![]));
        let v = validate(&network(json!({"type": "evm", "rpc": []}))).unwrap();
        assert_eq!(
            v[0].to_string(),
            "spec.rpc: Invalid value: 0: spec.rpc in body should have at least 1 items"
        );
        let v = validate(&network(
            json!({"type": "evm", "rpc": [{"url": "ftp://x", "weight": 101}], "confirmationz": 1}),
        ))
        .unwrap();
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"spec.confirmationz: unknown field \"confirmationz\"".to_string()),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("spec.rpc[0].weight: ")
                && t.ends_with("should be less than or equal to 100")),
            "{text:?}"
        );
        assert!(
            text.contains(&"spec.rpc[0]: url must start with http://, https://, ws:// or wss://".to_string()),
            "{text:?}"
        );
        let v = validate(&network(json!({"type": "bitcoin", "rpc": [{"url": "https://x"}]}))).unwrap();
        assert!(v[0].message.starts_with("Unsupported value: \"bitcoin\""), "{v:?}");
        assert_eq!(validate(&json!({"kind": "Pod"})), None);
    }
}

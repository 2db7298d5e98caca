//! Soroban values (`ScVal`) as monitors see them: a kind (`I128`, `Address`, `Map`, …), a text value
//! and a JSON form (upstream's rendering: small integers as numbers, 128/256-bit integers as
//! `{"type","value"}` objects, bytes as hex, addresses as strkeys, maps keyed by their key's text).

use serde_json::{Map, Value as Json, json};
use stellar_xdr::{Limits, ReadXdr, ScVal};

/// Every kind [`kind`] names (what a positional event signature, one without a spec, is made of).
pub const KINDS: [&str; 19] = [
    "Bool",
    "Void",
    "Error",
    "U32",
    "I32",
    "U64",
    "I64",
    "Timepoint",
    "Duration",
    "U128",
    "I128",
    "U256",
    "I256",
    "Bytes",
    "String",
    "Symbol",
    "Vec",
    "Map",
    "Address",
];

/// The upstream kind name of a value.
pub fn kind(v: &ScVal) -> &'static str {
    match v {
        ScVal::Bool(_) => "Bool",
        ScVal::Void => "Void",
        ScVal::Error(_) => "Error",
        ScVal::U32(_) => "U32",
        ScVal::I32(_) => "I32",
        ScVal::U64(_) => "U64",
        ScVal::I64(_) => "I64",
        ScVal::Timepoint(_) => "Timepoint",
        ScVal::Duration(_) => "Duration",
        ScVal::U128(_) => "U128",
        ScVal::I128(_) => "I128",
        ScVal::U256(_) => "U256",
        ScVal::I256(_) => "I256",
        ScVal::Bytes(_) => "Bytes",
        ScVal::String(_) => "String",
        ScVal::Symbol(_) => "Symbol",
        ScVal::Vec(_) => "Vec",
        ScVal::Map(_) => "Map",
        ScVal::Address(_) => "Address",
        _ => "Unknown",
    }
}

/// Text of a string or symbol (lossy UTF-8), `None` for other values.
pub fn text_of(v: &ScVal) -> Option<String> {
    match v {
        ScVal::String(s) => Some(String::from_utf8_lossy(s.as_slice()).into_owned()),
        ScVal::Symbol(s) => Some(String::from_utf8_lossy(s.as_slice()).into_owned()),
        _ => None,
    }
}

/// The text value of a parameter (upstream's): numbers in decimal, addresses as strkeys, bytes as
/// hex, strings as they are, `Void` as the empty string, vectors and maps as JSON.
pub fn text(v: &ScVal) -> String {
    match v {
        ScVal::Bool(b) => b.to_string(),
        ScVal::Void => String::new(),
        ScVal::U32(n) => n.to_string(),
        ScVal::I32(n) => n.to_string(),
        ScVal::U64(n) => n.to_string(),
        ScVal::I64(n) => n.to_string(),
        ScVal::Timepoint(t) => t.0.to_string(),
        ScVal::Duration(d) => d.0.to_string(),
        ScVal::U128(n) => n.to_string(),
        ScVal::I128(n) => n.to_string(),
        ScVal::U256(n) => n.to_string(),
        ScVal::I256(n) => n.to_string(),
        ScVal::Bytes(b) => hex::encode(b.as_slice()),
        ScVal::String(_) | ScVal::Symbol(_) => text_of(v).unwrap_or_default(),
        ScVal::Address(a) => a.to_string(),
        ScVal::Vec(_) | ScVal::Map(_) => to_json(v).to_string(),
        ScVal::Error(e) => format!("{e:?}"),
        other => format!("{other:?}"),
    }
}

/// Upstream's JSON form of a value.
pub fn to_json(v: &ScVal) -> Json {
    match v {
        ScVal::Bool(b) => json!(b),
        ScVal::Void => Json::Null,
        ScVal::U32(n) => json!(n),
        ScVal::I32(n) => json!(n),
        ScVal::U64(n) => json!(n),
        ScVal::I64(n) => json!(n),
        ScVal::Timepoint(t) => json!(t.0),
        ScVal::Duration(d) => json!(d.0),
        ScVal::U128(_) | ScVal::I128(_) | ScVal::U256(_) | ScVal::I256(_) => {
            json!({"type": kind(v), "value": text(v)})
        }
        ScVal::Bytes(_) | ScVal::String(_) | ScVal::Symbol(_) | ScVal::Address(_) => Json::String(text(v)),
        ScVal::Vec(Some(items)) => Json::Array(items.iter().map(to_json).collect()),
        ScVal::Vec(None) => Json::Array(vec![]),
        ScVal::Map(Some(entries)) => {
            let mut map = Map::new();
            for e in entries.iter() {
                let key = match text_of(&e.key) {
                    Some(s) => s,
                    None => match &e.key {
                        ScVal::Address(_) | ScVal::Bytes(_) => text(&e.key),
                        other => to_json(other).to_string(),
                    },
                };
                map.insert(key, to_json(&e.val));
            }
            Json::Object(map)
        }
        ScVal::Map(None) => Json::Object(Map::new()),
        other => Json::String(text(other)),
    }
}

/// Decodes a base64 XDR ScVal.
pub fn from_base64(b64: &str) -> Result<ScVal, String> {
    ScVal::from_xdr_base64(b64, Limits::len(1 << 20)).map_err(|e| format!("invalid ScVal XDR: {e}"))
}

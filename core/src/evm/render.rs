//! Text and JSON forms of decoded ABI values.
//!
//! The text form is upstream's (what notifications, `matched_on_args` and tuple equality see):
//! addresses and byte strings as `0x` lower-case hex, integers in decimal, strings as they are,
//! arrays `[a,b]`, tuples `(a,b)`. Inside an array or tuple, strings, addresses and bytes are
//! double-quoted and numbers and booleans are not: `(1,"x",["0xab…",true],("y",2))`. The JSON form
//! is what path access and array equality work on.

use alloy_dyn_abi::DynSolValue;
use serde_json::Value as Json;

/// Upstream's text form of a value.
pub fn render(value: &DynSolValue) -> String {
    let mut out = String::new();
    render_into(value, false, &mut out);
    out
}

/// `nested`: inside an array or tuple, where text-like values are quoted.
fn render_into(value: &DynSolValue, nested: bool, out: &mut String) {
    use std::fmt::Write;
    let quoted = nested
        && matches!(
            value,
            DynSolValue::Address(_)
                | DynSolValue::FixedBytes(..)
                | DynSolValue::Bytes(_)
                | DynSolValue::String(_)
                | DynSolValue::Function(_)
        );
    if quoted {
        out.push('"');
    }
    match value {
        DynSolValue::Address(a) => {
            let _ = write!(out, "{a:#x}");
        }
        DynSolValue::FixedBytes(word, size) => {
            out.push_str("0x");
            out.push_str(&hex::encode(&word[..*size]));
        }
        DynSolValue::Bytes(b) => {
            out.push_str("0x");
            out.push_str(&hex::encode(b));
        }
        DynSolValue::Int(i, _) => {
            let _ = write!(out, "{i}");
        }
        DynSolValue::Uint(u, _) => {
            let _ = write!(out, "{u}");
        }
        DynSolValue::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        DynSolValue::String(s) => out.push_str(s),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            out.push('[');
            join(items, out);
            out.push(']');
        }
        DynSolValue::Tuple(items) => {
            out.push('(');
            join(items, out);
            out.push(')');
        }
        DynSolValue::Function(f) => {
            out.push_str("0x");
            out.push_str(&hex::encode(f.as_slice()));
        }
    }
    if quoted {
        out.push('"');
    }
}

fn join(items: &[DynSolValue], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render_into(item, true, out);
    }
}

/// JSON form: integers as JSON numbers (parsed from their decimal text, so very large values become
/// floating point exactly as upstream's JSON parsing does), text and hex as strings, arrays and
/// tuples as arrays.
pub fn to_json(value: &DynSolValue) -> Json {
    match value {
        DynSolValue::Int(i, _) => number(&i.to_string()),
        DynSolValue::Uint(u, _) => number(&u.to_string()),
        DynSolValue::Bool(b) => Json::Bool(*b),
        DynSolValue::String(s) => Json::String(s.clone()),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        other => Json::String(render(other)),
    }
}

fn number(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, I256, U256};

    #[test]
    fn renders_like_upstream() {
        let addr: Address = "0x58B704065B7AFF3ED351052F8560019E05925023".parse().unwrap();
        let v = DynSolValue::Tuple(vec![
            DynSolValue::Uint(U256::from(1), 256),
            DynSolValue::String("x".into()),
            DynSolValue::Array(vec![DynSolValue::Address(addr), DynSolValue::Bool(true)]),
            DynSolValue::Int(I256::try_from(-5).unwrap(), 8),
            DynSolValue::Bytes(vec![0xab, 0xcd]),
        ]);
        assert_eq!(render(&v), r#"(1,"x",["0x58b704065b7aff3ed351052f8560019e05925023",true],-5,"0xabcd")"#);
        assert_eq!(
            to_json(&v),
            serde_json::json!([1, "x", ["0x58b704065b7aff3ed351052f8560019e05925023", true], -5, "0xabcd"])
        );
    }
}

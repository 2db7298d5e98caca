//! YAML that every reader reads back as we meant it. A string is written plain only when no YAML
//! 1.1 or 1.2 reader can take it for something else (it starts with a letter, has no character
//! that means something to YAML, is not `yes`/`no`/`on`/`off`/`null`/…); everything else is
//! double-quoted, so `0x…` addresses, hashes and zero-padded hex stay strings for kubectl, Argo
//! CD and Python alike. Multi-line text (scripts, ABIs) is a literal block.

use std::fmt::Write;

use serde_json::Value;

/// One YAML document for `value` (no `---`), ending in a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => seq(a, 0, &mut out),
        other => {
            scalar(other, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn map(m: &serde_json::Map<String, Value>, at: usize, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            indent(at, out);
        }
        key(k, out);
        out.push(':');
        value_after(v, at, out);
    }
}

fn seq(items: &[Value], at: usize, out: &mut String) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            indent(at, out);
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => map(m, at + 2, out),
            Value::Array(a) if !a.is_empty() => seq(a, at + 2, out),
            other => {
                scalar(other, at + 2, out);
                out.push('\n');
            }
        }
    }
}

/// What follows `key:` — a nested block on the next lines, or a scalar on the same line.
fn value_after(v: &Value, at: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(at + 2, out);
            map(m, at + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            indent(at, out);
            seq(a, at, out);
        }
        other => {
            out.push(' ');
            scalar(other, at + 2, out);
            out.push('\n');
        }
    }
}

fn key(k: &str, out: &mut String) {
    if plain_is_safe(k) {
        out.push_str(k);
    } else {
        quoted(k, out);
    }
}

/// A scalar; `at` is the indentation of a literal block's lines.
fn scalar(v: &Value, at: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) if plain_is_safe(s) => out.push_str(s),
        Value::String(s) if literal_block_fits(s) => literal_block(s, at, out),
        Value::String(s) => quoted(s, out),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A double-quoted scalar: JSON's escapes are YAML's.
fn quoted(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// YAML 1.1 readers take these words for booleans or null (in any case, to be safe).
const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    first.is_ascii_alphabetic()
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " _-./()=<>!&|*,".contains(c))
        && !s.ends_with(':')
        && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// Multi-line text without what a literal block cannot carry as is (leading spaces on its first
/// line, tabs, carriage returns, trailing spaces, control characters).
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.lines().all(|l| !l.ends_with(' '))
        && !s.chars().any(|c| c.is_control() && c != '\n')
}

fn literal_block(s: &str, at: usize, out: &mut String) {
    // `|` keeps one final newline, `|-` none, `|+` all of them
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in s.trim_end_matches('\n').split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(at, out);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value) -> Value {
        let text = to_string(v);
        let back: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        serde_json::to_value(back).unwrap()
    }

    #[test]
    fn what_looks_like_a_number_or_a_bool_stays_a_string() {
        let tricky = [
            "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
            "0x0000000000000000000000000000000000000000",
            "0x00",
            "0X1F",
            "0o17",
            "012",
            "1_000",
            "1:20",
            "1e3",
            ".inf",
            "-.5",
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "~",
            "null",
            "True",
            "",
            " leading",
            "a: b",
            "x #comment",
            "*alias",
            "&anchor",
            "!tag",
            "@at",
            "`tick",
            "%percent",
            "key:",
            "'single'",
            "\"double\"",
            "[1,2]",
            "{a: 1}",
            "tab\there",
            "back\\slash",
            "ünïcödé",
        ];
        let v = json!({"list": tricky.to_vec(), "map": tricky.iter().map(|s| (s.to_string(), json!(s))).collect::<serde_json::Map<_, _>>()});
        assert_eq!(round_trip(&v), v);
        let text = to_string(&v);
        assert!(text.contains("- \"0x00\""), "{text}");
        assert!(text.contains("- \"yes\""), "{text}");
    }

    #[test]
    fn manifests_read_back_as_written() {
        let v = json!({
            "apiVersion": "chainwatch.io/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "usdc", "namespace": "acme", "annotations": {"chainwatch.io/upstream-name": "Large Transfer of USDC Token"}},
            "spec": {
                "networks": ["ethereum-mainnet"],
                "paused": false,
                "addresses": [{"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "contractSpec": [{"type": "function", "inputs": [], "name": "f"}]}],
                "matchConditions": {"functions": [], "events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 10000000000 AND to == 0x0000000000000000000000000000000000000000"}]},
                "triggerConditions": [{"language": "Bash", "source": "#!/bin/bash\nset -e\n\n  indented\necho done\n", "timeoutMs": 1000}],
                "empty": {},
                "none": [],
                "nested": [[1, 2], [], [{"a": null}]],
                "noFinalNewline": "line one\nline two",
                "twoFinalNewlines": "x\n\n",
                "firstLineIndented": "  x\ny",
                "crlf": "a\r\nb",
            }
        });
        assert_eq!(round_trip(&v), v);
        let text = to_string(&v);
        assert!(text.contains("address: \"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\""), "{text}");
        assert!(text.contains("source: |\n"), "scripts are literal blocks: {text}");
    }
}

//! Comparison helpers shared by the chain evaluators: case-insensitive text operators, decimal
//! equality, and OpenZeppelin Monitor's "does this JSON value match this literal" rule.

use serde_json::Value as Json;

use crate::expr::{CmpOp, EvalError};

/// Text comparison, case-insensitive as upstream: `==`, `!=`, `starts_with`, `ends_with`,
/// `contains`. Ordering operators are an error.
pub fn compare_text(lhs: &str, op: CmpOp, rhs: &str) -> Result<bool, EvalError> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase();
    Ok(match op {
        CmpOp::Eq => eq(lhs, rhs),
        CmpOp::Ne => !eq(lhs, rhs),
        CmpOp::StartsWith => lhs.to_lowercase().starts_with(&rhs.to_lowercase()),
        CmpOp::EndsWith => lhs.to_lowercase().ends_with(&rhs.to_lowercase()),
        CmpOp::Contains => lhs.to_lowercase().contains(&rhs.to_lowercase()),
        _ => return Err(EvalError::new(format!("operator {op} is not supported for text"))),
    })
}

/// Equality of two decimal numbers written as text (`1`, `1.0`, `-0`, `001.50`), exact at any
/// size. `None` when either side is not a decimal number.
pub fn decimal_eq(a: &str, b: &str) -> Option<bool> {
    Some(normalize_decimal(a)? == normalize_decimal(b)?)
}

fn normalize_decimal(s: &str) -> Option<(bool, String, String)> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0').to_string();
    let frac = frac.trim_end_matches('0').to_string();
    let zero = int.is_empty() && frac.is_empty();
    Some((neg && !zero, int, frac))
}

/// OpenZeppelin Monitor's element rule for `contains` on arrays, maps and tuples: strings compare
/// case-insensitively (as addresses when they look like one and `is_address` says so), numbers
/// compare as decimals (falling back to text), booleans by text, objects and arrays when any of
/// their values matches, null when the literal is `null`.
pub fn json_matches_literal(value: &Json, rhs: &str, is_address: &dyn Fn(&str) -> bool) -> bool {
    match value {
        Json::String(s) => {
            if is_address(s) {
                normalize_hex_address(s) == normalize_hex_address(rhs)
            } else {
                s.to_lowercase() == rhs.to_lowercase()
            }
        }
        Json::Number(n) => {
            let text = n.to_string();
            decimal_eq(&text, rhs).unwrap_or(text == rhs)
        }
        Json::Bool(b) => b.to_string().eq_ignore_ascii_case(rhs),
        Json::Object(map) => map.values().any(|v| json_matches_literal(v, rhs, is_address)),
        Json::Array(items) => items.iter().any(|v| json_matches_literal(v, rhs, is_address)),
        Json::Null => rhs == "null",
    }
}

/// Upstream's EVM address normalization: strip a lower-case `0x` prefix, remove spaces, lower-case.
/// (An upper-case `0X` prefix is not stripped, so such a literal never equals an address.)
pub fn normalize_hex_address(s: &str) -> String {
    s.strip_prefix("0x").unwrap_or(s).replace(' ', "").to_lowercase()
}

/// Lower-cases every string inside a JSON value (object keys included), for upstream's
/// case-insensitive JSON equality.
pub fn lowercase_json(value: &Json) -> Json {
    match value {
        Json::String(s) => Json::String(s.to_lowercase()),
        Json::Array(items) => Json::Array(items.iter().map(lowercase_json).collect()),
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.to_lowercase(), lowercase_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// The text form of a JSON value as upstream passes it on after path access: strings without
/// quotes, numbers and booleans as written, arrays and objects as JSON, null as `null`.
pub fn json_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_exactly_at_any_size() {
        assert_eq!(decimal_eq("1", "1.0"), Some(true));
        assert_eq!(decimal_eq("001.50", "1.5"), Some(true));
        assert_eq!(decimal_eq("-0", "0"), Some(true));
        assert_eq!(decimal_eq("-1", "1"), Some(false));
        let big = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(decimal_eq(big, big), Some(true));
        assert_eq!(
            decimal_eq(big, "115792089237316195423570985008687907853269984665640564039457584007913129639934"),
            Some(false)
        );
        assert_eq!(decimal_eq("abc", "1"), None);
        assert_eq!(decimal_eq(".", "0"), None);
    }

    #[test]
    fn text_operators_ignore_case() {
        assert!(compare_text("Alice", CmpOp::Eq, "alice").unwrap());
        assert!(compare_text("Alice", CmpOp::Contains, "LIC").unwrap());
        assert!(compare_text("Alice", CmpOp::StartsWith, "AL").unwrap());
        assert!(compare_text("Alice", CmpOp::EndsWith, "CE").unwrap());
        assert!(compare_text("Alice", CmpOp::Ne, "bob").unwrap());
        assert!(compare_text("Alice", CmpOp::Gt, "a").is_err());
    }
}

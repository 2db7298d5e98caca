//! Typed comparisons for Stellar parameters (OpenZeppelin Monitor §4.5).
//!
//! The kind is the parameter's type, lower-cased and cut at `<` (`Map<Symbol,Val>` is `map`):
//! integers up to 128 bits compare in order and take a number literal; `u256`/`i256` compare only
//! for (in)equality of their decimal text; `string`/`symbol`/`address`/`bytes` compare as text,
//! ignoring case; `vec` and `map` compare as JSON, with upstream's comma-separated fallback for
//! vectors; `bool` takes `true`/`false`. Path access reads the value as JSON, where a number is `u64`
//! (or `i64` when negative) and a `{"type", "value"}` object takes its own type.

use serde_json::Value as Json;

use crate::expr::{Accessor, CmpOp, Comparison, EvalError, Expr, Literal, Node, TypeError};
use crate::value::{compare_text, json_matches_literal, json_text, lowercase_json};

/// A decoded Stellar parameter: name, kind (`I128`, `Address`, `Map`, …) and text value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StellarArg {
    pub name: String,
    pub kind: String,
    pub value: String,
}

/// A compiled comparison.
#[derive(Clone, Debug)]
pub struct StellarLeaf {
    pub param: String,
    pub path: Vec<Accessor>,
    pub op: CmpOp,
    pub rhs: Literal,
}

pub type StellarExpr = Node<StellarLeaf>;

fn base_kind(kind: &str) -> String {
    if super::spec::fixed_bytes_len(kind).is_some() {
        return "bytes".into();
    }
    kind.split('<').next().unwrap_or(kind).trim().to_ascii_lowercase()
}

fn literal_text(l: &Literal) -> String {
    match l {
        Literal::Str(s) | Literal::Number(s) => s.clone(),
        Literal::Bool(b) => b.to_string(),
    }
}

/// Compiles an expression. With `known` parameters (`(name, type)`, from a contract spec or the
/// fixed transaction fields) names and types are checked now; without, at evaluation.
pub fn compile(
    source: &str,
    expr: &Expr,
    known: Option<&[(String, String)]>,
) -> Result<StellarExpr, TypeError> {
    expr.try_map(&mut |c: &Comparison| {
        if let Some(params) = known {
            let Some((_, ty)) = params.iter().find(|(n, _)| n == &c.lhs.base) else {
                let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
                return Err(TypeError::at(
                    source,
                    c.lhs.span,
                    format!("unknown parameter `{}` (known: {})", c.lhs.base, names.join(", ")),
                ));
            };
            if c.lhs.accessors.is_empty() {
                check(&base_kind(ty), c.op, &c.rhs)
                    .map_err(|m| TypeError::at(source, c.span, format!("`{}` ({ty}): {m}", c.lhs)))?;
            }
        }
        Ok(StellarLeaf {
            param: c.lhs.base.clone(),
            path: c.lhs.accessors.clone(),
            op: c.op,
            rhs: c.rhs.clone(),
        })
    })
}

const ORDERED: [&str; 8] = ["u32", "i32", "u64", "i64", "timepoint", "duration", "u128", "i128"];
const TEXT: [&str; 4] = ["string", "symbol", "address", "bytes"];

fn check(kind: &str, op: CmpOp, rhs: &Literal) -> Result<(), String> {
    let eq = matches!(op, CmpOp::Eq | CmpOp::Ne);
    match kind {
        "bool" => match (eq, rhs) {
            (true, Literal::Bool(_)) => Ok(()),
            (false, _) => Err(format!("{op} does not apply to booleans; use == or !=")),
            _ => Err("compare a bool with true or false".into()),
        },
        k if ORDERED.contains(&k) => match (op, rhs) {
            (CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith, _) => {
                Err(format!("{op} does not apply to numbers"))
            }
            (_, Literal::Number(_)) => Ok(()),
            _ => Err(format!("compare {k} with a number literal (unquoted)")),
        },
        "u256" | "i256" => {
            if eq {
                Ok(())
            } else {
                Err(format!("{kind} values only compare with == and != (as decimal text)"))
            }
        }
        "string" if matches!(rhs, Literal::Number(_)) => {
            Err("compare a String with text ('quoted'), not a number (upstream: a type error)".into())
        }
        k if TEXT.contains(&k) => {
            if op.is_ordering() {
                Err(format!("{op} does not apply to text; use ==, !=, contains, starts_with or ends_with"))
            } else {
                Ok(())
            }
        }
        "vec" | "map" => {
            if eq || op == CmpOp::Contains {
                Ok(())
            } else {
                Err(format!("{op} does not apply to {kind}; use ==, != or contains"))
            }
        }
        _ => Ok(()), // user-defined types: the kind of the value decides at evaluation
    }
}

/// A Stellar strkey account (`G…`) or contract (`C…`).
pub fn is_address(s: &str) -> bool {
    stellar_strkey::ed25519::PublicKey::from_string(s).is_ok()
        || stellar_strkey::Contract::from_string(s).is_ok()
}

/// Upstream's Stellar address normalization: trim, drop spaces, lower-case.
pub fn normalize_address(s: &str) -> String {
    s.trim().replace(' ', "").to_lowercase()
}

impl StellarLeaf {
    /// Evaluates on the parameters of one call, event or operation.
    pub fn eval(&self, args: &[StellarArg]) -> Result<bool, EvalError> {
        let arg = args
            .iter()
            .find(|a| a.name == self.param)
            .ok_or_else(|| EvalError::new(format!("Base parameter not found: {}", self.param)))?;
        if self.path.is_empty() {
            return compare(&base_kind(&arg.kind), &arg.value, self.op, &self.rhs);
        }
        let mut json: Json = serde_json::from_str(&arg.value)
            .map_err(|_| EvalError::new(format!("value of `{}` is not JSON", arg.name)))?;
        for accessor in &self.path {
            json = match (json, accessor) {
                (Json::Array(mut items), Accessor::Index(i)) => {
                    if *i >= items.len() {
                        return Err(EvalError::new(format!("Index {i} out of bounds")));
                    }
                    items.swap_remove(*i)
                }
                (Json::Object(mut map), Accessor::Key(k)) => {
                    map.remove(k).ok_or_else(|| EvalError::new(format!("Key '{k}' not found")))?
                }
                (_, Accessor::Index(_)) => return Err(EvalError::new("Array access on non-array")),
                (_, Accessor::Key(_)) => return Err(EvalError::new("Key access on non-object")),
            };
        }
        let (kind, text) = json_kind(&json);
        compare(&kind, &text, self.op, &self.rhs)
    }
}

/// Kind and text of a JSON value reached by a path.
fn json_kind(v: &Json) -> (String, String) {
    if let Json::Object(map) = v
        && let (Some(Json::String(t)), Some(value)) = (map.get("type"), map.get("value"))
    {
        return (base_kind(t), json_text(value));
    }
    let kind = match v {
        Json::Number(n) if n.as_u64().is_some() => "u64",
        Json::Number(n) if n.as_i64().is_some() => "i64",
        Json::Number(_) => "f64",
        Json::String(s) if is_address(s) => "address",
        Json::String(_) => "string",
        Json::Bool(_) => "bool",
        Json::Array(_) => "vec",
        Json::Object(_) => "map",
        Json::Null => "void",
    };
    (kind.to_string(), json_text(v))
}

fn ordered<T: Ord + std::str::FromStr>(
    kind: &str,
    lhs: &str,
    op: CmpOp,
    rhs: &Literal,
) -> Result<bool, EvalError> {
    let Literal::Number(r) = rhs else {
        return Err(EvalError::new(format!("Expected number literal for {kind} comparison")));
    };
    let l: T = lhs.parse().map_err(|_| EvalError::new(format!("Failed to parse '{lhs}' as {kind}")))?;
    let r: T = r.parse().map_err(|_| EvalError::new(format!("Failed to parse '{r}' as {kind}")))?;
    op.holds(l.cmp(&r)).ok_or_else(|| EvalError::new(format!("operator {op} is not supported for {kind}")))
}

fn csv(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_lowercase()).collect()
}

fn compare(kind: &str, lhs: &str, op: CmpOp, rhs: &Literal) -> Result<bool, EvalError> {
    let rtext = literal_text(rhs);
    match kind {
        "bool" => match (rhs, op) {
            (Literal::Bool(b), CmpOp::Eq) => Ok((lhs == "true") == *b),
            (Literal::Bool(b), CmpOp::Ne) => Ok((lhs == "true") != *b),
            _ => Err(EvalError::new("bool compares with == / != and true / false")),
        },
        "u32" => ordered::<u32>(kind, lhs, op, rhs),
        "i32" => ordered::<i32>(kind, lhs, op, rhs),
        "u64" | "timepoint" | "duration" => ordered::<u64>(kind, lhs, op, rhs),
        "i64" => ordered::<i64>(kind, lhs, op, rhs),
        "u128" => ordered::<u128>(kind, lhs, op, rhs),
        "i128" => ordered::<i128>(kind, lhs, op, rhs),
        "u256" | "i256" => match op {
            CmpOp::Eq => Ok(lhs == rtext),
            CmpOp::Ne => Ok(lhs != rtext),
            _ => Err(EvalError::new(format!("Operator {op} not supported for {kind} string comparison"))),
        },
        "address" if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
            let same = normalize_address(lhs) == normalize_address(&rtext);
            Ok(if op == CmpOp::Eq { same } else { !same })
        }
        "string" if matches!(rhs, Literal::Number(_)) => {
            Err(EvalError::new("Expected string literal for String comparison"))
        }
        "string" | "symbol" | "address" | "bytes" => compare_text(lhs, op, &rtext),
        "vec" => match op {
            CmpOp::Eq | CmpOp::Ne => {
                let same = match (serde_json::from_str::<Json>(lhs), serde_json::from_str::<Json>(&rtext)) {
                    (Ok(a), Ok(b)) => lowercase_json(&a) == lowercase_json(&b),
                    (Err(_), Err(_)) => csv(lhs) == csv(&rtext),
                    _ => false,
                };
                Ok(if op == CmpOp::Eq { same } else { !same })
            }
            CmpOp::Contains => match serde_json::from_str::<Json>(lhs) {
                Ok(Json::Array(items)) => Ok(items.iter().any(|item| match item {
                    Json::Object(map) if map.contains_key("value") => {
                        json_matches_literal(&map["value"], &rtext, &is_address)
                    }
                    other => json_matches_literal(other, &rtext, &is_address),
                })),
                _ => {
                    let inner = lhs.trim().trim_start_matches('[').trim_end_matches(']');
                    Ok(inner.split(',').any(|p| p.trim() == rtext))
                }
            },
            _ => Err(EvalError::new(format!("operator {op} is not supported for vec"))),
        },
        "map" => match op {
            CmpOp::Eq | CmpOp::Ne => {
                let a: Json =
                    serde_json::from_str(lhs).map_err(|_| EvalError::new("map value is not JSON"))?;
                let b: Json = serde_json::from_str(&rtext)
                    .map_err(|_| EvalError::new(format!("Failed to parse '{rtext}' as a JSON map")))?;
                Ok(if op == CmpOp::Eq { a == b } else { a != b })
            }
            CmpOp::Contains => {
                let a: Json =
                    serde_json::from_str(lhs).map_err(|_| EvalError::new("map value is not JSON"))?;
                Ok(a.as_object()
                    .is_some_and(|m| m.values().any(|v| json_matches_literal(v, &rtext, &is_address))))
            }
            _ => Err(EvalError::new(format!("operator {op} is not supported for map"))),
        },
        other => Err(EvalError::new(format!("Unknown parameter type: {other}"))),
    }
}

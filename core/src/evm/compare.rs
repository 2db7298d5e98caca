//! Typed comparisons for EVM parameters (OpenZeppelin Monitor §4.4), compiled once per monitor.
//!
//! Compilation resolves the parameter by name, checks that the operator and the literal suit its
//! ABI type and pre-parses the literal; evaluation then works on the decoded values without parsing
//! text. Where a path leads into JSON text (a `string` parameter holding JSON), the kind is inferred
//! from the JSON value at run time as upstream does.
//!
//! Beyond upstream, on purpose: every `uintN`/`intN` width and every `bytesN` compares (upstream
//! only knows 8/16/32/64/128/256 and `bytes32`, so `fee == 3000` on a `uint24` never matched there);
//! array elements and tuple components can be reached by path (`items[0].amount`, `order.price`,
//! `order.0`), and `contains` works on arrays of addresses, strings and tuples, which upstream
//! rendered as non-JSON text and then failed to parse.

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::{Address, I256, U256};
use serde_json::Value as Json;

use super::abi::{EvmKind, ParamShape};
use super::render::{render, to_json};
use crate::expr::{Accessor, CmpOp, Comparison, EvalError, Expr, Literal, Node, TypeError};
use crate::value::{
    compare_text, decimal_eq, json_matches_literal, json_text, lowercase_json, normalize_hex_address,
};

/// A compiled comparison.
#[derive(Clone, Debug)]
pub struct EvmLeaf {
    /// Index of the parameter in the argument list it is evaluated on.
    pub param: usize,
    pub path: Vec<Accessor>,
    pub op: CmpOp,
    pub rhs: Rhs,
}

/// The right-hand side literal, pre-parsed for the types it may meet.
#[derive(Clone, Debug)]
pub struct Rhs {
    pub literal: Literal,
    /// The literal as text (strings as written, numbers as written, booleans `true`/`false`).
    pub text: String,
    pub uint: Option<U256>,
    pub int: Option<I256>,
    /// The literal as an address, when upstream's normalization of it is 40 hex digits.
    pub address: Option<Address>,
}

impl Rhs {
    fn new(literal: &Literal) -> Self {
        let text = match literal {
            Literal::Str(s) | Literal::Number(s) => s.clone(),
            Literal::Bool(b) => b.to_string(),
        };
        let (uint, int) = match literal {
            Literal::Str(s) | Literal::Number(s) => (parse_u256(s), parse_i256(s)),
            Literal::Bool(_) => (None, None),
        };
        let address = match literal {
            Literal::Str(s) => {
                let n = normalize_hex_address(s);
                (n.len() == 40 && n.bytes().all(|c| c.is_ascii_hexdigit())).then(|| n.parse().ok()).flatten()
            }
            _ => None,
        };
        Self { literal: literal.clone(), text, uint, int, address }
    }
}

/// A compiled expression over EVM parameters.
pub type EvmExpr = Node<EvmLeaf>;

/// Parses `0x…` hex or decimal into a U256.
pub fn parse_u256(s: &str) -> Option<U256> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 64 {
            return None;
        }
        return U256::from_str_radix(hex, 16).ok();
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(s, 10).ok()
}

/// Parses decimal (with sign) or `0x…` hex (raw two's complement) into an I256.
pub fn parse_i256(s: &str) -> Option<I256> {
    if s.starts_with("0x") || s.starts_with("0X") {
        return parse_u256(s).map(I256::from_raw);
    }
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_u256(digits).filter(|_| !digits.starts_with("0x"))?;
    let v = I256::checked_from_sign_and_abs(
        if neg { alloy_primitives::Sign::Negative } else { alloy_primitives::Sign::Positive },
        magnitude,
    )?;
    Some(v)
}

/// Compiles an expression against the parameters it will be evaluated on.
pub fn compile(source: &str, expr: &Expr, params: &[ParamShape]) -> Result<EvmExpr, TypeError> {
    expr.try_map(&mut |cmp: &Comparison| compile_leaf(source, cmp, params))
}

/// Compiles an expression for one contract of a monitor whose other contracts declare the same
/// signature with other parameter names: a comparison on a name only `elsewhere` knows fails when
/// evaluated here (upstream's "Base parameter not found"), as upstream evaluates each contract on
/// its own. Returns the names this contract lacks; a name no contract knows is still an error.
pub fn compile_for_one_of(
    source: &str,
    expr: &Expr,
    params: &[ParamShape],
    elsewhere: &dyn Fn(&str) -> bool,
) -> Result<(EvmExpr, Vec<String>), TypeError> {
    let mut absent = Vec::new();
    let compiled = expr.try_map(&mut |cmp: &Comparison| {
        if !params.iter().any(|p| p.name == cmp.lhs.base) && elsewhere(&cmp.lhs.base) {
            if !absent.contains(&cmp.lhs.base) {
                absent.push(cmp.lhs.base.clone());
            }
            let rhs = Rhs::new(&cmp.rhs);
            return Ok(EvmLeaf { param: ABSENT, path: cmp.lhs.accessors.clone(), op: cmp.op, rhs });
        }
        compile_leaf(source, cmp, params)
    })?;
    Ok((compiled, absent))
}

/// The parameter index of a comparison on a parameter the contract does not have.
const ABSENT: usize = usize::MAX;

fn compile_leaf(source: &str, cmp: &Comparison, params: &[ParamShape]) -> Result<EvmLeaf, TypeError> {
    let Some(index) = params.iter().position(|p| p.name == cmp.lhs.base) else {
        let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).filter(|n| !n.is_empty()).collect();
        let hint = if known.is_empty() {
            "it has no named parameters".to_string()
        } else {
            format!("known: {}", known.join(", "))
        };
        return Err(TypeError::at(
            source,
            cmp.lhs.span,
            format!("unknown parameter `{}` ({hint})", cmp.lhs.base),
        ));
    };
    let rhs = Rhs::new(&cmp.rhs);
    let leaf = EvmLeaf { param: index, path: cmp.lhs.accessors.clone(), op: cmp.op, rhs };
    match resolve_shape(&params[index], &cmp.lhs.accessors) {
        Ok(Some(shape)) => check(&shape.kind, &shape.type_string, cmp.op, &leaf.rhs).map_err(|msg| {
            TypeError::at(source, cmp.span, format!("`{}` ({}): {msg}", cmp.lhs, shape.type_string))
        })?,
        Ok(None) => {} // into JSON text: the kind is known only at run time
        Err(msg) => return Err(TypeError::at(source, cmp.lhs.span, msg)),
    }
    Ok(leaf)
}

/// Follows a path through parameter shapes. `Ok(None)` once the path enters JSON text.
fn resolve_shape<'a>(shape: &'a ParamShape, path: &[Accessor]) -> Result<Option<&'a ParamShape>, String> {
    let mut current = shape;
    for accessor in path {
        current = match (&current.kind, accessor) {
            (EvmKind::Array, Accessor::Index(_)) => {
                current.element.as_deref().expect("arrays have an element shape")
            }
            (EvmKind::Tuple, Accessor::Key(key)) => match component(current, key) {
                Some(c) => c,
                None => {
                    let names: Vec<&str> = current.components.iter().map(|c| c.name.as_str()).collect();
                    return Err(format!(
                        "tuple `{}` has no component `{key}` (components: {})",
                        current.name,
                        names.join(", ")
                    ));
                }
            },
            (EvmKind::String, _) => return Ok(None),
            (_, Accessor::Index(_)) => {
                return Err(format!(
                    "`{}` is a {}, not an array: [i] does not apply",
                    current.name, current.type_string
                ));
            }
            (_, Accessor::Key(key)) => {
                return Err(format!(
                    "`{}` is a {}, not a tuple or JSON text: .{key} does not apply",
                    current.name, current.type_string
                ));
            }
        };
    }
    Ok(Some(current))
}

fn component<'a>(tuple: &'a ParamShape, key: &str) -> Option<&'a ParamShape> {
    tuple
        .components
        .iter()
        .find(|c| c.name == key)
        .or_else(|| key.parse::<usize>().ok().and_then(|i| tuple.components.get(i)))
}

/// Static check of operator and literal against a parameter type.
fn check(kind: &EvmKind, type_string: &str, op: CmpOp, rhs: &Rhs) -> Result<(), String> {
    let text_ops = "==, !=, contains, starts_with, ends_with";
    match kind {
        EvmKind::Uint(_) => {
            if !(op.is_ordering() || matches!(op, CmpOp::Eq | CmpOp::Ne)) {
                return Err(format!("{op} does not apply to numbers; use ==, !=, >, >=, <, <="));
            }
            match rhs.literal {
                Literal::Bool(_) => Err("compare a number with a number literal".into()),
                _ if rhs.uint.is_none() => {
                    Err(format!("'{}' is not an unsigned integer (decimal or 0x hex)", rhs.text))
                }
                _ => Ok(()),
            }
        }
        EvmKind::Int(_) => {
            if !(op.is_ordering() || matches!(op, CmpOp::Eq | CmpOp::Ne)) {
                return Err(format!("{op} does not apply to numbers; use ==, !=, >, >=, <, <="));
            }
            match rhs.literal {
                Literal::Bool(_) => Err("compare a number with a number literal".into()),
                _ if rhs.int.is_none() => Err(format!("'{}' is not a signed integer", rhs.text)),
                _ => Ok(()),
            }
        }
        EvmKind::Address => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(format!("{op} does not apply to addresses; use == or !="));
            }
            match rhs.literal {
                Literal::Str(_) => Ok(()),
                _ => Err("compare an address with a 0x… literal".into()),
            }
        }
        EvmKind::String | EvmKind::Bytes | EvmKind::FixedBytes(_) => {
            if op.is_ordering() {
                return Err(format!("{op} does not apply to text; use {text_ops}"));
            }
            match rhs.literal {
                Literal::Str(_) => Ok(()),
                _ => Err(format!("compare {type_string} with a 'quoted' literal")),
            }
        }
        EvmKind::Bool => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(format!("{op} does not apply to booleans; use == or !="));
            }
            match rhs.literal {
                Literal::Bool(_) => Ok(()),
                _ => Err("compare a bool with true or false (lower-case, unquoted)".into()),
            }
        }
        EvmKind::Array => match (op, &rhs.literal) {
            (CmpOp::Eq | CmpOp::Ne, Literal::Str(s)) => match serde_json::from_str::<Json>(s) {
                Ok(Json::Array(_)) => Ok(()),
                _ => Err(format!("compare an array with a JSON array literal such as '[1,2]', not '{s}'")),
            },
            (CmpOp::Eq | CmpOp::Ne, _) => {
                Err("compare an array with a JSON array literal such as '[1,2]'".into())
            }
            (CmpOp::Contains, Literal::Str(_) | Literal::Number(_)) => Ok(()),
            (CmpOp::Contains, Literal::Bool(_)) => {
                Err("contains on an array takes a number or a 'quoted' literal".into())
            }
            _ => Err(format!("{op} does not apply to arrays; use ==, != or contains")),
        },
        EvmKind::Tuple => match (op, &rhs.literal) {
            (CmpOp::Eq | CmpOp::Ne, Literal::Str(_)) => Ok(()),
            (CmpOp::Eq | CmpOp::Ne, _) => {
                Err("compare a tuple with a 'quoted' literal such as '(1,abc)'".into())
            }
            (CmpOp::Contains, Literal::Str(_) | Literal::Number(_)) => Ok(()),
            (CmpOp::Contains, Literal::Bool(_)) => {
                Err("contains on a tuple takes a number or a 'quoted' literal".into())
            }
            _ => Err(format!("{op} does not apply to tuples; use ==, != or contains")),
        },
        EvmKind::Other => Err(format!("expressions cannot compare parameters of type {type_string}")),
    }
}

/// A decoded argument: its shape and value.
#[derive(Clone, Copy, Debug)]
pub struct Arg<'a> {
    pub shape: &'a ParamShape,
    pub value: &'a DynSolValue,
}

enum Target<'a> {
    Typed(&'a ParamShape, &'a DynSolValue),
    Json(Json),
}

impl EvmLeaf {
    /// Evaluates the comparison on decoded arguments (in the order the leaf was compiled for; a
    /// `None` is a parameter this transaction does not have, such as `to` of a contract creation).
    pub fn eval(&self, args: &[Option<Arg<'_>>]) -> Result<bool, EvalError> {
        let arg = args
            .get(self.param)
            .copied()
            .flatten()
            .ok_or_else(|| EvalError::new("Base parameter not found"))?;
        match self.follow(arg.shape, arg.value)? {
            Target::Typed(shape, value) => compare_typed(shape, value, self.op, &self.rhs),
            Target::Json(json) => compare_json(&json, self.op, &self.rhs),
        }
    }

    fn follow<'a>(&self, shape: &'a ParamShape, value: &'a DynSolValue) -> Result<Target<'a>, EvalError> {
        let mut shape = shape;
        let mut value = value;
        for (i, accessor) in self.path.iter().enumerate() {
            match (value, accessor) {
                (DynSolValue::Array(items) | DynSolValue::FixedArray(items), Accessor::Index(n)) => {
                    value =
                        items.get(*n).ok_or_else(|| EvalError::new(format!("Index {n} out of bounds")))?;
                    shape = shape.element.as_deref().unwrap_or(shape);
                }
                (DynSolValue::Tuple(items), Accessor::Key(key)) => {
                    let pos = shape
                        .components
                        .iter()
                        .position(|c| &c.name == key)
                        .or_else(|| key.parse::<usize>().ok())
                        .ok_or_else(|| EvalError::new(format!("Key '{key}' not found")))?;
                    value = items.get(pos).ok_or_else(|| EvalError::new(format!("Key '{key}' not found")))?;
                    shape = shape.components.get(pos).unwrap_or(shape);
                }
                (DynSolValue::String(text), _) => {
                    let json: Json = serde_json::from_str(text)
                        .map_err(|e| EvalError::new(format!("value of `{}` is not JSON: {e}", shape.name)))?;
                    return follow_json(json, &self.path[i..]).map(Target::Json);
                }
                (_, Accessor::Index(_)) => return Err(EvalError::new("Array access on non-array")),
                (_, Accessor::Key(_)) => return Err(EvalError::new("Key access on non-object")),
            }
        }
        Ok(Target::Typed(shape, value))
    }
}

fn follow_json(mut json: Json, path: &[Accessor]) -> Result<Json, EvalError> {
    for accessor in path {
        json = match (json, accessor) {
            (Json::Array(mut items), Accessor::Index(n)) => {
                if *n >= items.len() {
                    return Err(EvalError::new(format!("Index {n} out of bounds")));
                }
                items.swap_remove(*n)
            }
            (Json::Object(mut map), Accessor::Key(key)) => {
                map.remove(key).ok_or_else(|| EvalError::new(format!("Key '{key}' not found")))?
            }
            (_, Accessor::Index(_)) => return Err(EvalError::new("Array access on non-array")),
            (_, Accessor::Key(_)) => return Err(EvalError::new("Key access on non-object")),
        };
    }
    Ok(json)
}

fn ordered<T: Ord>(lhs: &T, op: CmpOp, rhs: &T) -> Result<bool, EvalError> {
    op.holds(lhs.cmp(rhs))
        .ok_or_else(|| EvalError::new(format!("operator {op} is not supported for numbers")))
}

fn compare_typed(shape: &ParamShape, value: &DynSolValue, op: CmpOp, rhs: &Rhs) -> Result<bool, EvalError> {
    match (&shape.kind, value) {
        (_, DynSolValue::Uint(u, _)) => {
            let r = rhs
                .uint
                .ok_or_else(|| EvalError::new(format!("Failed to parse RHS value '{}' as U256", rhs.text)))?;
            ordered(u, op, &r)
        }
        (_, DynSolValue::Int(i, _)) => {
            let r = rhs
                .int
                .ok_or_else(|| EvalError::new(format!("Failed to parse RHS value '{}' as I256", rhs.text)))?;
            ordered(i, op, &r)
        }
        (_, DynSolValue::Address(a)) => {
            let Literal::Str(_) = &rhs.literal else {
                return Err(EvalError::new("Expected string literal for address comparison"));
            };
            // upstream compares normalized text; a normalized address is 40 hex digits, so the
            // texts are equal exactly when the literal normalizes to the same 20 bytes
            let same = rhs.address.as_ref() == Some(a);
            match op {
                CmpOp::Eq => Ok(same),
                CmpOp::Ne => Ok(!same),
                _ => Err(EvalError::new(format!("operator {op} is not supported for addresses"))),
            }
        }
        (_, DynSolValue::Bool(b)) => match (&rhs.literal, op) {
            (Literal::Bool(r), CmpOp::Eq) => Ok(b == r),
            (Literal::Bool(r), CmpOp::Ne) => Ok(b != r),
            _ => Err(EvalError::new("bool compares with == / != and true / false")),
        },
        (_, DynSolValue::String(_) | DynSolValue::Bytes(_) | DynSolValue::FixedBytes(..)) => match &rhs
            .literal
        {
            Literal::Str(s) => compare_text(&render(value), op, s),
            _ => Err(EvalError::new(format!("Expected string literal for {} comparison", shape.type_string))),
        },
        (_, DynSolValue::Array(items) | DynSolValue::FixedArray(items)) => match op {
            CmpOp::Eq | CmpOp::Ne => {
                let Literal::Str(s) = &rhs.literal else {
                    return Err(EvalError::new(
                        "Expected string literal (a JSON array) for array comparison",
                    ));
                };
                let r: Json = serde_json::from_str(s)
                    .map_err(|_| EvalError::new(format!("Failed to parse RHS value '{s}' as JSON array")))?;
                if !r.is_array() {
                    return Err(EvalError::new("both sides of an array comparison must be JSON arrays"));
                }
                let same = lowercase_json(&to_json(value)) == lowercase_json(&r);
                Ok(if op == CmpOp::Eq { same } else { !same })
            }
            CmpOp::Contains => {
                let element = shape.element.as_deref().unwrap_or(shape);
                Ok(items.iter().any(|item| element_matches(element, item, &rhs.text)))
            }
            _ => Err(EvalError::new(format!("operator {op} is not supported for arrays"))),
        },
        (_, DynSolValue::Tuple(items)) => match op {
            CmpOp::Eq | CmpOp::Ne => {
                let Literal::Str(s) = &rhs.literal else {
                    return Err(EvalError::new("Expected string literal for tuple comparison"));
                };
                let same = strip_unquoted_whitespace(&render(value)) == strip_unquoted_whitespace(s);
                Ok(if op == CmpOp::Eq { same } else { !same })
            }
            CmpOp::Contains => Ok(items.iter().enumerate().any(|(i, item)| {
                let c = shape.components.get(i).unwrap_or(shape);
                element_matches(c, item, &rhs.text)
            })),
            _ => Err(EvalError::new(format!("operator {op} is not supported for tuples"))),
        },
        (_, DynSolValue::Function(_)) => {
            Err(EvalError::new("Unsupported EVM parameter kind for comparison: function"))
        }
    }
}

/// Whether one element of an array or tuple matches a `contains` literal (upstream's element
/// rule, applied to typed values).
fn element_matches(shape: &ParamShape, value: &DynSolValue, rhs: &str) -> bool {
    match value {
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            let element = shape.element.as_deref().unwrap_or(shape);
            items.iter().any(|v| element_matches(element, v, rhs))
        }
        DynSolValue::Tuple(items) => items
            .iter()
            .enumerate()
            .any(|(i, v)| element_matches(shape.components.get(i).unwrap_or(shape), v, rhs)),
        DynSolValue::Uint(..) | DynSolValue::Int(..) => {
            let text = render(value);
            decimal_eq(&text, rhs).unwrap_or(text == rhs)
        }
        DynSolValue::Bool(b) => b.to_string().eq_ignore_ascii_case(rhs),
        _ => json_matches_literal(&Json::String(render(value)), rhs, &looks_like_address),
    }
}

fn looks_like_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|c| c.is_ascii_hexdigit())
}

/// Upstream's kind of a JSON value reached by a path (EVM rules).
fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::String(s) if looks_like_address(s) => "address",
        Json::String(s)
            if s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            "bytes32"
        }
        Json::String(s)
            if s.starts_with("0x") && s.len() > 2 && s[2..].bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            "bytes"
        }
        Json::String(_) => "string",
        Json::Number(n) if n.as_i64().is_some_and(|i| i < 0) => "int64",
        Json::Number(_) => "number",
        Json::Bool(_) => "bool",
        Json::Array(_) => "array",
        Json::Object(_) => "map",
        Json::Null => "null",
    }
}

fn compare_json(v: &Json, op: CmpOp, rhs: &Rhs) -> Result<bool, EvalError> {
    let text = json_text(v);
    match json_kind(v) {
        "number" => {
            let l = parse_u256(&text)
                .ok_or_else(|| EvalError::new(format!("Failed to parse LHS value '{text}' as U256")))?;
            let r = rhs
                .uint
                .ok_or_else(|| EvalError::new(format!("Failed to parse RHS value '{}' as U256", rhs.text)))?;
            ordered(&l, op, &r)
        }
        "int64" => {
            let l = parse_i256(&text)
                .ok_or_else(|| EvalError::new(format!("Failed to parse LHS value '{text}' as I256")))?;
            let r = rhs
                .int
                .ok_or_else(|| EvalError::new(format!("Failed to parse RHS value '{}' as I256", rhs.text)))?;
            ordered(&l, op, &r)
        }
        "address" => {
            let Literal::Str(s) = &rhs.literal else {
                return Err(EvalError::new("Expected string literal for address comparison"));
            };
            let same = normalize_hex_address(&text) == normalize_hex_address(s);
            match op {
                CmpOp::Eq => Ok(same),
                CmpOp::Ne => Ok(!same),
                _ => Err(EvalError::new(format!("operator {op} is not supported for addresses"))),
            }
        }
        "string" | "bytes" | "bytes32" => match &rhs.literal {
            Literal::Str(s) => compare_text(&text, op, s),
            _ => Err(EvalError::new("Expected string literal for string comparison")),
        },
        "bool" => match (&rhs.literal, op) {
            (Literal::Bool(r), CmpOp::Eq) => Ok(v.as_bool() == Some(*r)),
            (Literal::Bool(r), CmpOp::Ne) => Ok(v.as_bool() != Some(*r)),
            _ => Err(EvalError::new("bool compares with == / != and true / false")),
        },
        "array" => match op {
            CmpOp::Eq | CmpOp::Ne => {
                let r: Json = match &rhs.literal {
                    Literal::Str(s) => serde_json::from_str(s).map_err(|_| {
                        EvalError::new(format!("Failed to parse RHS value '{s}' as JSON array"))
                    })?,
                    _ => {
                        return Err(EvalError::new(
                            "Expected string literal (a JSON array) for array comparison",
                        ));
                    }
                };
                let same = lowercase_json(v) == lowercase_json(&r);
                Ok(if op == CmpOp::Eq { same } else { !same })
            }
            CmpOp::Contains => Ok(v.as_array().is_some_and(|items| {
                items.iter().any(|item| json_matches_literal(item, &rhs.text, &looks_like_address))
            })),
            _ => Err(EvalError::new(format!("operator {op} is not supported for arrays"))),
        },
        other => Err(EvalError::new(format!("Unsupported EVM parameter kind for comparison: {other}"))),
    }
}

/// Removes whitespace outside quotes (upstream's tuple equality normalization).
fn strip_unquoted_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
            }
            None if c.is_whitespace() => {}
            None => out.push(c),
        }
    }
    out
}

//! A contract's JSON ABI compiled once for matching: functions by selector and events by topic0,
//! each with its canonical signature, parameter shapes and a pre-resolved decoder.

use std::collections::HashMap;

use alloy_dyn_abi::{DynSolEvent, DynSolType, Specifier};
use alloy_json_abi::{JsonAbi, Param};
use alloy_primitives::B256;

use crate::signature::normalize_signature;

/// What an expression can do with a parameter, derived from its ABI type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvmKind {
    Uint(usize),
    Int(usize),
    Address,
    Bool,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `bytesN`
    FixedBytes(usize),
    /// `T[]` or `T[N]`
    Array,
    /// `tuple` (a struct)
    Tuple,
    /// `function` and anything expressions cannot compare.
    Other,
}

/// A parameter: name, ABI type string (the upstream "kind": `uint256`, `tuple`, `tuple[]`, …),
/// and the shapes of its components (tuples) or elements (arrays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamShape {
    pub name: String,
    pub type_string: String,
    pub kind: EvmKind,
    /// Tuple components.
    pub components: Vec<ParamShape>,
    /// Array element.
    pub element: Option<Box<ParamShape>>,
}

impl ParamShape {
    pub fn new(name: &str, type_string: &str, components: &[Param]) -> Self {
        let type_string = type_string.trim().to_string();
        if let Some(open) = type_string.rfind('[')
            && type_string.ends_with(']')
        {
            let element = ParamShape::new("", &type_string[..open], components);
            return Self {
                name: name.to_string(),
                type_string,
                kind: EvmKind::Array,
                components: vec![],
                element: Some(Box::new(element)),
            };
        }
        let kind = kind_of(&type_string);
        let components = if kind == EvmKind::Tuple {
            components.iter().map(|c| ParamShape::new(&c.name, &c.ty, &c.components)).collect()
        } else {
            vec![]
        };
        Self { name: name.to_string(), type_string, kind, components, element: None }
    }

    /// A shape for a fixed transaction field.
    pub fn scalar(name: &str, type_string: &str) -> Self {
        Self::new(name, type_string, &[])
    }
}

fn kind_of(ty: &str) -> EvmKind {
    let bits = |rest: &str| -> Option<usize> {
        if rest.is_empty() {
            return Some(256);
        }
        rest.parse::<usize>().ok().filter(|b| *b > 0 && *b <= 256 && b % 8 == 0)
    };
    if ty == "tuple" || ty.starts_with('(') {
        EvmKind::Tuple
    } else if let Some(rest) = ty.strip_prefix("uint") {
        bits(rest).map_or(EvmKind::Other, EvmKind::Uint)
    } else if let Some(rest) = ty.strip_prefix("int") {
        bits(rest).map_or(EvmKind::Other, EvmKind::Int)
    } else {
        match ty {
            "address" => EvmKind::Address,
            "bool" => EvmKind::Bool,
            "string" => EvmKind::String,
            "bytes" => EvmKind::Bytes,
            _ => match ty.strip_prefix("bytes").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if (1..=32).contains(&n) => EvmKind::FixedBytes(n),
                _ => EvmKind::Other,
            },
        }
    }
}

/// A function of the ABI.
#[derive(Debug)]
pub struct AbiFunction {
    /// Canonical signature, e.g. `transfer(address,uint256)`.
    pub signature: String,
    /// Signature with whitespace removed and lower-cased, for comparison with conditions.
    pub normalized: String,
    pub inputs: Vec<ParamShape>,
    decoder: DynSolType,
}

/// An event of the ABI.
#[derive(Debug)]
pub struct AbiEvent {
    pub signature: String,
    pub normalized: String,
    /// `0x`-prefixed topic0.
    pub hex_signature: String,
    /// Parameters in declaration order, with whether each is indexed.
    pub inputs: Vec<(ParamShape, bool)>,
    /// The shapes decoded values have: as declared, except indexed dynamic types (hashes).
    pub arg_shapes: Vec<ParamShape>,
    decoder: DynSolEvent,
}

/// A compiled ABI.
#[derive(Debug, Default)]
pub struct ContractAbi {
    pub functions: HashMap<[u8; 4], AbiFunction>,
    pub events: HashMap<B256, AbiEvent>,
}

/// Why an ABI could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    #[error("is not a JSON ABI (an array of function/event/error entries): {0}")]
    NotAnAbi(String),
    #[error("entry `{name}` has a type the ABI decoder does not know: {reason}")]
    BadType { name: String, reason: String },
}

impl ContractAbi {
    /// Compiles a JSON ABI (the usual array of entries).
    pub fn from_json(abi: &serde_json::Value) -> Result<Self, AbiError> {
        let abi: JsonAbi =
            serde_json::from_value(abi.clone()).map_err(|e| AbiError::NotAnAbi(e.to_string()))?;
        let mut out = ContractAbi::default();
        for f in abi.functions() {
            let types = f
                .inputs
                .iter()
                .map(|p| p.resolve())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AbiError::BadType { name: f.name.clone(), reason: e.to_string() })?;
            let signature = f.signature();
            out.functions.insert(
                f.selector().0,
                AbiFunction {
                    normalized: normalize_signature(&signature),
                    signature,
                    inputs: f.inputs.iter().map(|p| ParamShape::new(&p.name, &p.ty, &p.components)).collect(),
                    decoder: DynSolType::Tuple(types),
                },
            );
        }
        for e in abi.events() {
            if e.anonymous {
                continue; // no topic0 to find it by
            }
            let decoder = e
                .resolve()
                .map_err(|err| AbiError::BadType { name: e.name.clone(), reason: err.to_string() })?;
            let signature = e.signature();
            let topic0 = e.selector();
            let inputs: Vec<(ParamShape, bool)> = e
                .inputs
                .iter()
                .map(|p| (ParamShape::new(&p.name, &p.ty, &p.components), p.indexed))
                .collect();
            let arg_shapes = inputs
                .iter()
                .map(|(p, indexed)| if *indexed { indexed_shape(p) } else { p.clone() })
                .collect();
            out.events.insert(
                topic0,
                AbiEvent {
                    normalized: normalize_signature(&signature),
                    signature,
                    hex_signature: format!("{topic0:#x}"),
                    inputs,
                    arg_shapes,
                    decoder,
                },
            );
        }
        Ok(out)
    }

    /// The function whose normalized signature is `normalized`, if any.
    pub fn function_by_signature(&self, normalized: &str) -> Option<(&[u8; 4], &AbiFunction)> {
        self.functions.iter().find(|(_, f)| f.normalized == normalized)
    }

    /// The event whose normalized signature is `normalized`, if any.
    pub fn event_by_signature(&self, normalized: &str) -> Option<(&B256, &AbiEvent)> {
        self.events.iter().find(|(_, e)| e.normalized == normalized)
    }
}

impl AbiFunction {
    /// Decodes call data (after the 4-byte selector).
    pub fn decode(&self, args: &[u8]) -> Result<Vec<alloy_dyn_abi::DynSolValue>, String> {
        match self.decoder.abi_decode_params(args) {
            Ok(alloy_dyn_abi::DynSolValue::Tuple(values)) => Ok(values),
            Ok(other) => Ok(vec![other]),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl AbiEvent {
    /// Decodes a log into the event's parameters in declaration order.
    pub fn decode(&self, topics: &[B256], data: &[u8]) -> Result<Vec<alloy_dyn_abi::DynSolValue>, String> {
        let decoded =
            self.decoder.decode_log_parts(topics.iter().copied(), data).map_err(|e| e.to_string())?;
        let mut indexed = decoded.indexed.into_iter();
        let mut body = decoded.body.into_iter();
        self.inputs
            .iter()
            .map(|(_, is_indexed)| if *is_indexed { indexed.next() } else { body.next() })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "decoded fewer values than the event declares".to_string())
    }
}

/// Indexed parameters of dynamic type (string, bytes, arrays, tuples) are stored as the keccak
/// hash of their value: they compare as 32 bytes (the type string stays as declared).
fn indexed_shape(shape: &ParamShape) -> ParamShape {
    let dynamic = matches!(shape.kind, EvmKind::String | EvmKind::Bytes | EvmKind::Array | EvmKind::Tuple);
    if dynamic {
        ParamShape { kind: EvmKind::FixedBytes(32), components: vec![], element: None, ..shape.clone() }
    } else {
        shape.clone()
    }
}

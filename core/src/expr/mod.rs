//! The filter expression language of OpenZeppelin Monitor: grammar, parser and evaluation.
//!
//! An expression is parsed once ([`parse()`]) and compiled per monitor generation by the
//! chain-specific compilers (`crate::evm::compare`, `crate::stellar::compare`), which turn each
//! comparison into a leaf that evaluates without re-parsing.

pub mod ast;
pub mod parse;

pub use ast::{Accessor, CmpOp, Comparison, Expr, Literal, Node, Path, Span};
pub use parse::{ParseError, parse};

/// A problem found while compiling an expression against the parameters it will see: unknown
/// parameter, operator not supported for the parameter's type, literal of the wrong type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// 1-based column of the offending part of the expression.
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

impl TypeError {
    pub fn at(source: &str, span: Span, message: impl Into<String>) -> Self {
        let offset = span.start.min(source.len());
        Self { column: source[..offset].chars().count() + 1, message: message.into() }
    }
}

/// Why a comparison could not be evaluated on a value at run time (the condition then does not
/// match, as upstream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

impl EvalError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

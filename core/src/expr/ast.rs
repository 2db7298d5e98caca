//! Syntax tree of the filter expression language (OpenZeppelin Monitor grammar).

use std::fmt;

/// Byte range of a piece of the source text, used in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A boolean tree whose leaves are of type `L`: comparisons after parsing, compiled comparisons
/// after compilation.
#[derive(Clone, Debug, PartialEq)]
pub enum Node<L> {
    And(Box<Node<L>>, Box<Node<L>>),
    Or(Box<Node<L>>, Box<Node<L>>),
    Leaf(L),
}

/// A parsed expression.
pub type Expr = Node<Comparison>;

/// `lhs op rhs`: exactly one comparison (there is no NOT and no bare boolean).
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub lhs: Path,
    pub op: CmpOp,
    pub rhs: Literal,
    /// The whole comparison in the source.
    pub span: Span,
    /// The right-hand side in the source.
    pub rhs_span: Span,
}

/// A parameter name followed by accessors: `value`, `ids[1]`, `data.key`, `0`, `map.0[1].name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub base: String,
    pub accessors: Vec<Accessor>,
    pub span: Span,
}

/// `[index]` or `.key` (a key may be digits: `obj.0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accessor {
    Index(usize),
    Key(String),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    StartsWith,
    EndsWith,
}

/// A right-hand side literal. Numbers stay text until a typed comparison parses them; hex literals
/// (`0x…`) and bare words are strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Number(String),
    Bool(bool),
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Contains => "contains",
            Self::StartsWith => "starts_with",
            Self::EndsWith => "ends_with",
        }
    }

    /// `>`, `>=`, `<`, `<=`.
    pub fn is_ordering(self) -> bool {
        matches!(self, Self::Gt | Self::Ge | Self::Lt | Self::Le)
    }

    /// Applies this operator to an ordering (for `==`, `!=` and the four orderings).
    pub fn holds(self, ord: std::cmp::Ordering) -> Option<bool> {
        use std::cmp::Ordering::*;
        Some(match self {
            Self::Eq => ord == Equal,
            Self::Ne => ord != Equal,
            Self::Gt => ord == Greater,
            Self::Ge => ord != Less,
            Self::Lt => ord == Less,
            Self::Le => ord != Greater,
            _ => return None,
        })
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "'{s}'"),
            Self::Number(n) => f.write_str(n),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        for a in &self.accessors {
            match a {
                Accessor::Index(i) => write!(f, "[{i}]")?,
                Accessor::Key(k) => write!(f, ".{k}")?,
            }
        }
        Ok(())
    }
}

impl<L> Node<L> {
    /// Evaluates the tree left to right with short-circuiting, like upstream: `And` skips its right
    /// side when the left is false, `Or` when the left is true. An error in an evaluated leaf
    /// propagates (the whole expression then counts as not matched by the caller).
    pub fn evaluate<E>(&self, leaf: &mut impl FnMut(&L) -> Result<bool, E>) -> Result<bool, E> {
        match self {
            Node::Leaf(l) => leaf(l),
            Node::And(a, b) => Ok(a.evaluate(leaf)? && b.evaluate(leaf)?),
            Node::Or(a, b) => Ok(a.evaluate(leaf)? || b.evaluate(leaf)?),
        }
    }

    /// Maps every leaf, keeping the shape; stops at the first error.
    pub fn try_map<M, E>(&self, f: &mut impl FnMut(&L) -> Result<M, E>) -> Result<Node<M>, E> {
        Ok(match self {
            Node::Leaf(l) => Node::Leaf(f(l)?),
            Node::And(a, b) => Node::And(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Node::Or(a, b) => Node::Or(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
        })
    }

    /// Visits every leaf in source order.
    pub fn for_each_leaf<'a>(&'a self, f: &mut impl FnMut(&'a L)) {
        match self {
            Node::Leaf(l) => f(l),
            Node::And(a, b) | Node::Or(a, b) => {
                a.for_each_leaf(f);
                b.for_each_leaf(f);
            }
        }
    }
}

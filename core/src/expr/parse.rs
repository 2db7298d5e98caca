//! Parser of the filter expression language, following OpenZeppelin Monitor's grammar:
//!
//! ```text
//! expression := ws or_expr ws EOF
//! or_expr    := and_expr ( ws "OR" ws and_expr )*          (keywords case-insensitive)
//! and_expr   := term ( ws "AND" ws term )*
//! term       := ws ( "(" ws or_expr ws ")" | comparison ) ws
//! comparison := path ws op ws value
//! path       := base accessor*     base := identifier (not a keyword) | digits
//! accessor   := "[" digits "]" | "." ( identifier | digits )
//! op         := contains | starts_with | ends_with | >= | <= | == | != | > | <
//! value      := quoted | bool | hex | number | bare word   (tried in this order)
//! ```
//!
//! Escapes inside quotes are kept as written (`'a\'b'` is the text `a\'b`), booleans are lower-case
//! only, `0x…` literals are strings, numbers stay text until a typed comparison reads them.

use super::ast::{Accessor, CmpOp, Comparison, Expr, Literal, Node, Path, Span};

/// A syntax error with the position (1-based column, in characters) where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "syntax error at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

const KEYWORDS: [&str; 7] = ["true", "false", "and", "or", "contains", "starts_with", "ends_with"];

/// Deepest nesting of parentheses accepted (keeps recursion bounded on hostile input).
const MAX_DEPTH: usize = 64;

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn is_delimiter(b: Option<u8>) -> bool {
    match b {
        None => true,
        Some(c) => {
            c.is_ascii_whitespace()
                || matches!(c, b')' | b'(' | b',' | b'=' | b'!' | b'>' | b'<' | b'&' | b'|' | b']')
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Parses an expression.
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { src: source, bytes: source.as_bytes(), pos: 0, depth: 0 };
    p.ws();
    if p.peek().is_none() {
        return Err(p.error_at(0, "the expression is empty"));
    }
    let expr = p.or_expr()?;
    p.ws();
    if p.pos < p.bytes.len() {
        let rest: String = p.src[p.pos..].chars().take(20).collect();
        let hint = if rest.starts_with("&&") || rest.starts_with("||") {
            ": use the words AND / OR"
        } else if rest.to_ascii_lowercase().starts_with("not") {
            ": there is no NOT; negate the comparison instead (== becomes !=)"
        } else {
            ""
        };
        return Err(p.error(format!("unexpected '{rest}' after a complete expression{hint}")));
    }
    Ok(expr)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, i: usize) -> Option<u8> {
        self.bytes.get(self.pos + i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let offset = offset.min(self.src.len());
        let column = self.src[..offset].chars().count() + 1;
        ParseError { column, offset, message: message.into() }
    }

    /// Case-insensitive keyword at the cursor (no boundary check, like upstream's `tag_no_case`).
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        if end <= self.bytes.len()
            && self.src.is_char_boundary(end)
            && self.src[self.pos..end].eq_ignore_ascii_case(kw)
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and_expr()?;
        loop {
            let save = self.pos;
            self.ws();
            if self.keyword("OR") {
                self.ws();
                let right = self.and_expr()?;
                left = Node::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        loop {
            let save = self.pos;
            self.ws();
            if self.keyword("AND") {
                self.ws();
                let right = self.term()?;
                left = Node::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        self.ws();
        let node = if self.peek() == Some(b'(') {
            let open = self.pos;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.error(format!("parentheses nested deeper than {MAX_DEPTH} levels")));
            }
            self.pos += 1;
            self.ws();
            let inner = self.or_expr()?;
            self.ws();
            if self.peek() != Some(b')') {
                return Err(match self.peek() {
                    None => self.error_at(open, "this '(' is never closed"),
                    Some(_) => self.error("expected ')', AND or OR"),
                });
            }
            self.pos += 1;
            self.depth -= 1;
            inner
        } else {
            Node::Leaf(self.comparison()?)
        };
        self.ws();
        Ok(node)
    }

    fn comparison(&mut self) -> Result<Comparison, ParseError> {
        let start = self.pos;
        let lhs = self.path()?;
        self.ws();
        let op = self.operator()?;
        self.ws();
        let rhs_start = self.pos;
        let rhs = self.value()?;
        let end = self.pos;
        Ok(Comparison { lhs, op, rhs, span: Span { start, end }, rhs_span: Span { start: rhs_start, end } })
    }

    fn path(&mut self) -> Result<Path, ParseError> {
        let start = self.pos;
        let base = match self.peek() {
            Some(c) if is_ident_start(c) => {
                let word = self.take_while(is_ident_char);
                if is_keyword(word) {
                    return Err(self.error_at(
                        start,
                        format!("'{word}' is a keyword and cannot be used as a parameter name"),
                    ));
                }
                word.to_string()
            }
            Some(c) if c.is_ascii_digit() => {
                let digits = self.take_while(|c| c.is_ascii_digit());
                let next = self.peek();
                let ok = matches!(next, None | Some(b'[' | b'.' | b'=' | b'!' | b'>' | b'<'))
                    || next.is_some_and(|c| c.is_ascii_whitespace());
                if !ok {
                    return Err(self.error_at(
                        start,
                        "a parameter name starts with a letter or '_' (or is a position such as 0)",
                    ));
                }
                digits.to_string()
            }
            None => return Err(self.error("expected a comparison such as `value > 100`, found the end")),
            Some(_) => {
                return Err(
                    self.error("expected a parameter name (e.g. `value`) at the start of a comparison")
                );
            }
        };
        let mut accessors = Vec::new();
        loop {
            match self.peek() {
                Some(b'[') => {
                    let open = self.pos;
                    self.pos += 1;
                    let digits = self.take_while(|c| c.is_ascii_digit());
                    if digits.is_empty() || self.peek() != Some(b']') {
                        return Err(
                            self.error_at(open, "an index is written [N] with N a non-negative number")
                        );
                    }
                    let index = digits
                        .parse::<usize>()
                        .map_err(|_| self.error_at(open, format!("index {digits} is too large")))?;
                    self.pos += 1;
                    accessors.push(Accessor::Index(index));
                }
                Some(b'.') => {
                    let dot = self.pos;
                    self.pos += 1;
                    let key = match self.peek() {
                        Some(c) if is_ident_start(c) => self.take_while(is_ident_char),
                        Some(c) if c.is_ascii_digit() => self.take_while(|c| c.is_ascii_digit()),
                        _ => {
                            return Err(
                                self.error_at(dot, "a key is written .name (letters, digits, '_') or .N")
                            );
                        }
                    };
                    accessors.push(Accessor::Key(key.to_string()));
                }
                _ => break,
            }
        }
        Ok(Path { base, accessors, span: Span { start, end: self.pos } })
    }

    fn operator(&mut self) -> Result<CmpOp, ParseError> {
        for (word, op) in [
            ("contains", CmpOp::Contains),
            ("starts_with", CmpOp::StartsWith),
            ("ends_with", CmpOp::EndsWith),
        ] {
            if self.keyword(word) {
                return Ok(op);
            }
        }
        for (sym, op) in [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ] {
            if self.src[self.pos..].starts_with(sym) {
                self.pos += sym.len();
                return Ok(op);
            }
        }
        Err(match self.peek() {
            None => self.error("expected an operator (==, !=, >, >=, <, <=, contains, starts_with, ends_with), found the end"),
            Some(b'=') => self.error("'=' is not an operator: write == to compare"),
            Some(_) => self.error("expected an operator: ==, !=, >, >=, <, <=, contains, starts_with or ends_with"),
        })
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if f(c)) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    fn value(&mut self) -> Result<Literal, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => return self.quoted(q),
            None => return Err(self.error("expected a value after the operator, found the end")),
            _ => {}
        }
        // bool: lower-case only, followed by a delimiter
        for (word, b) in [("true", true), ("false", false)] {
            if self.src[self.pos..].starts_with(word) && is_delimiter(self.peek_at(word.len())) {
                self.pos += word.len();
                return Ok(Literal::Bool(b));
            }
        }
        // hex: 0x / 0X followed by hex digits and a delimiter
        if self.peek() == Some(b'0') && matches!(self.peek_at(1), Some(b'x' | b'X')) {
            let mut i = 2;
            while self.peek_at(i).is_some_and(|c| c.is_ascii_hexdigit()) {
                i += 1;
            }
            if i > 2 && is_delimiter(self.peek_at(i)) {
                let text = &self.src[self.pos..self.pos + i];
                self.pos += i;
                return Ok(Literal::Str(text.to_string()));
            }
        }
        // number: [+-]? digits ('.' digits)? followed by a delimiter
        {
            let mut i = 0;
            if matches!(self.peek_at(0), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits_start = i;
            while self.peek_at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            if i > digits_start {
                let mut j = i;
                if self.peek_at(j) == Some(b'.') {
                    j += 1;
                    let frac_start = j;
                    while self.peek_at(j).is_some_and(|c| c.is_ascii_digit()) {
                        j += 1;
                    }
                    if j == frac_start {
                        j = usize::MAX; // "5." is not a number
                    }
                }
                if j != usize::MAX && is_delimiter(self.peek_at(j)) {
                    let text = &self.src[self.pos..self.pos + j];
                    self.pos += j;
                    return Ok(Literal::Number(text.to_string()));
                }
            }
        }
        // bare word
        let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if word.is_empty() {
            self.pos = start;
            return Err(self.error(
                "expected a value: a number, a 'quoted string', true, false, a 0x… hex literal or a bare word",
            ));
        }
        if self.peek() == Some(b'.') {
            let token_end = self.src[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .map_or(self.src.len(), |n| start + n);
            return Err(self.error_at(
                start,
                format!("'{}' is not a valid value: a number has at most one '.', and text containing '.' must be quoted", &self.src[start..token_end]),
            ));
        }
        if is_keyword(word) {
            let hint = if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
                format!(": booleans are lower-case ({})", word.to_ascii_lowercase())
            } else {
                format!(": quote it ('{word}') to compare with the text")
            };
            return Err(self.error_at(start, format!("'{word}' is a keyword, not a value{hint}")));
        }
        if word.bytes().all(|c| c.is_ascii_digit() || c == b'+' || c == b'-') {
            return Err(self.error_at(start, format!("'{word}' is not a valid number")));
        }
        Ok(Literal::Str(word.to_string()))
    }

    fn quoted(&mut self, quote: u8) -> Result<Literal, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let content_start = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(open, "this string is never closed: add the closing quote"));
                }
                Some(b'\\') if matches!(self.peek_at(1), Some(c) if c == quote || c == b'\\') => {
                    self.pos += 2;
                }
                Some(c) if c == quote => {
                    let text = &self.src[content_start..self.pos];
                    self.pos += 1;
                    return Ok(Literal::Str(text.to_string()));
                }
                Some(_) => {
                    // advance one whole UTF-8 character
                    let ch = self.src[self.pos..].chars().next().map_or(1, char::len_utf8);
                    self.pos += ch;
                }
            }
        }
    }
}

//! Grammar (§4.2) and parser edge cases (§4.8).

use chainwatch_core::expr::{Accessor, CmpOp, Expr, Literal, Node, parse};

fn leaf(e: &Expr) -> &chainwatch_core::expr::Comparison {
    match e {
        Node::Leaf(c) => c,
        other => panic!("expected one comparison, got {other:?}"),
    }
}

fn rhs(src: &str) -> Literal {
    leaf(&parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))).rhs.clone()
}

fn shape(e: &Expr) -> String {
    match e {
        Node::Leaf(c) => c.lhs.base.clone(),
        Node::And(a, b) => format!("({} AND {})", shape(a), shape(b)),
        Node::Or(a, b) => format!("({} OR {})", shape(a), shape(b)),
    }
}

#[test]
fn precedence_and_associativity() {
    let cases = [
        ("a == 1 OR b < 2 AND c > 3", "(a OR (b AND c))"),
        ("a == 1 AND b < 2 OR c > 3", "((a AND b) OR c)"),
        ("(a == 1 OR b < 2) AND c > 3", "((a OR b) AND c)"),
        ("(a == 1 OR b < 2)AND c > 3", "((a OR b) AND c)"),
        ("a == 1 and b == 2 or c == 3", "((a AND b) OR c)"),
        ("a == 1 AND b == 2 AND c == 3", "((a AND b) AND c)"),
        ("a == 1 OR b == 2 OR c == 3", "((a OR b) OR c)"),
        ("((a == 1))", "a"),
        ("  a == 1  ", "a"),
    ];
    for (src, want) in cases {
        assert_eq!(shape(&parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))), want, "{src}");
    }
}

#[test]
fn operators_including_case_insensitive_words() {
    let cases = [
        ("a == 1", CmpOp::Eq),
        ("a != 1", CmpOp::Ne),
        ("a > 1", CmpOp::Gt),
        ("a >= 1", CmpOp::Ge),
        ("a < 1", CmpOp::Lt),
        ("a <= 1", CmpOp::Le),
        ("a==1", CmpOp::Eq),
        ("a contains 'x'", CmpOp::Contains),
        ("a CONTAINS 'x'", CmpOp::Contains),
        ("a starts_with 'x'", CmpOp::StartsWith),
        ("a Ends_With 'x'", CmpOp::EndsWith),
    ];
    for (src, op) in cases {
        assert_eq!(leaf(&parse(src).unwrap()).op, op, "{src}");
    }
}

#[test]
fn values_are_lexed_in_order_quoted_bool_hex_number_word() {
    let s = |v: &str| Literal::Str(v.to_string());
    let n = |v: &str| Literal::Number(v.to_string());
    let cases = [
        ("x == 'hello world'", s("hello world")),
        ("x == \"double\"", s("double")),
        ("x == ''", s("")),
        (r"x == 'foo\'bar'", s(r"foo\'bar")), // escapes stay as written
        (r"x == 'a\\b'", s(r"a\\b")),
        ("x == true", Literal::Bool(true)),
        ("x == false", Literal::Bool(false)),
        ("x == true_val", s("true_val")),
        ("x == 0x1F", s("0x1F")),
        ("x == 0XaB", s("0XaB")),
        ("x == 0xVal", s("0xVal")),
        ("x == 123", n("123")),
        ("x == -5", n("-5")),
        ("x == +5", n("+5")),
        ("x == 1.5", n("1.5")),
        ("x == 123a", s("123a")),
        ("x == alice", s("alice")),
        ("x == some-name_1", s("some-name_1")),
        (
            "x == GDF32CQINROD3E2LMCGZUDVMWTXCJFR5SBYVRJ7WAAIAS3P7DCVWZEFY",
            s("GDF32CQINROD3E2LMCGZUDVMWTXCJFR5SBYVRJ7WAAIAS3P7DCVWZEFY"),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(rhs(src), want, "{src}");
    }
}

#[test]
fn paths_with_numeric_bases_and_keys() {
    let cases: [(&str, &str, Vec<Accessor>); 6] = [
        ("0 == 1", "0", vec![]),
        ("3 >= 2240", "3", vec![]),
        ("0.field == 1", "0", vec![Accessor::Key("field".into())]),
        ("obj.0 == 1", "obj", vec![Accessor::Key("0".into())]),
        (
            "map.0[1].name == 'x'",
            "map",
            vec![Accessor::Key("0".into()), Accessor::Index(1), Accessor::Key("name".into())],
        ),
        ("ids[12] == 2", "ids", vec![Accessor::Index(12)]),
    ];
    for (src, base, accessors) in cases {
        let c = leaf(&parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))).clone();
        assert_eq!((c.lhs.base.as_str(), c.lhs.accessors), (base, accessors), "{src}");
    }
}

/// Inputs upstream rejects, with the column we report and a word of the message.
#[test]
fn rejected_inputs_say_where_and_why() {
    let cases = [
        ("", 1, "empty"),
        ("   ", 1, "empty"),
        ("flag == TRUE", 9, "booleans are lower-case"),
        ("flag == True", 9, "booleans are lower-case"),
        ("amount > 10 && name == 'alice'", 13, "AND / OR"),
        ("NOT amount > 1", 5, "operator"),
        ("x == AND", 6, "keyword"),
        ("x == contains", 6, "keyword"),
        ("contains == 1", 1, "keyword"),
        ("and == 1", 1, "keyword"),
        ("x == 1.2.3", 6, "not a valid value"),
        ("x == .5", 6, "expected a value"),
        ("x == 5.", 6, "not a valid value"),
        ("x == 'unterminated", 6, "never closed"),
        ("x[] == 1", 2, "index"),
        ("x[abc] == 1", 2, "index"),
        ("x.1key == 1", 4, "operator"),
        ("x.key-name == 1", 6, "operator"),
        ("x = 1", 3, "=="),
        ("x == 1 extra", 8, "unexpected"),
        ("(x == 1", 1, "never closed"),
        ("x == 1)", 7, "unexpected"),
        ("x ==", 5, "end"),
        ("x", 2, "operator"),
        ("== 1", 1, "parameter name"),
        ("x == -", 6, "not a valid number"),
        ("0abc == 1", 1, "parameter name"),
    ];
    for (src, column, word) in cases {
        let err = parse(src).expect_err(src);
        assert_eq!(err.column, column, "{src}: {err}");
        assert!(err.message.contains(word), "{src}: message {:?} should mention {word:?}", err.message);
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = format!("{}a == 1{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).unwrap_err().message.contains("nested"));
    let ok = format!("{}a == 1{}", "(".repeat(50), ")".repeat(50));
    assert!(parse(&ok).is_ok());
}

#[test]
fn utf8_in_quoted_strings() {
    assert_eq!(rhs("x == 'héllo wörld ✓'"), Literal::Str("héllo wörld ✓".into()));
    let err = parse("x == 'ü' junk").unwrap_err();
    assert_eq!(err.column, 10);
}

//! Typed comparisons for EVM parameters (§4.4) and the runtime probes of upstream 1.6 (§4.9).

use alloy_dyn_abi::DynSolValue;
use alloy_json_abi::Param;
use alloy_primitives::{Address, I256, U256};
use chainwatch_core::evm::ParamShape;
use chainwatch_core::evm::compare::{Arg, compile};
use chainwatch_core::expr::parse;

#[derive(Debug, PartialEq)]
pub enum Outcome {
    True,
    False,
    /// Rejected by the parser (upstream: parse error).
    Syntax,
    /// Rejected when compiling against the parameter types (upstream: an evaluation error, so the
    /// condition never matched; chainwatch reports it in the Monitor's status instead).
    Type,
    /// Compiled, but failed on this value (the condition does not match, as upstream).
    Runtime,
}

fn param(name: &str, ty: &str, components: Vec<Param>) -> Param {
    Param { ty: ty.into(), name: name.into(), components, internal_type: None }
}

/// The parameters of §4.9: flag, fee, amount, name, who, order, ids — plus a few more kinds.
fn probe_params() -> (Vec<ParamShape>, Vec<DynSolValue>) {
    let who: Address = "0x58B704065B7AFF3ED351052F8560019E05925023".parse().unwrap();
    let list = vec![
        (param("flag", "bool", vec![]), DynSolValue::Bool(true)),
        (param("fee", "uint24", vec![]), DynSolValue::Uint(U256::from(3000), 24)),
        (param("amount", "uint256", vec![]), DynSolValue::Uint(U256::from(1000), 256)),
        (param("name", "string", vec![]), DynSolValue::String("Alice".into())),
        (param("who", "address", vec![]), DynSolValue::Address(who)),
        (
            param("order", "tuple", vec![param("id", "uint256", vec![]), param("label", "string", vec![])]),
            DynSolValue::Tuple(vec![DynSolValue::Uint(U256::from(1), 256), DynSolValue::String("x".into())]),
        ),
        (
            param("ids", "uint256[]", vec![]),
            DynSolValue::Array((1..=3).map(|i| DynSolValue::Uint(U256::from(i), 256)).collect()),
        ),
        (param("delta", "int256", vec![]), DynSolValue::Int(I256::try_from(-42).unwrap(), 256)),
        (param("hash", "bytes32", vec![]), DynSolValue::FixedBytes([0xab; 32].into(), 32)),
        (param("blob", "bytes", vec![]), DynSolValue::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
        (
            param("owners", "address[]", vec![]),
            DynSolValue::Array(vec![DynSolValue::Address(who), DynSolValue::Address(Address::ZERO)]),
        ),
        (
            param("meta", "string", vec![]),
            DynSolValue::String(
                r#"{"k":"V","n":5,"list":[1,2],"who":"0x58b704065b7aff3ed351052f8560019e05925023"}"#.into(),
            ),
        ),
        (param("max", "uint256", vec![]), DynSolValue::Uint(U256::MAX, 256)),
        (param("min", "int256", vec![]), DynSolValue::Int(I256::MIN, 256)),
        (
            param("sel", "bytes4", vec![]),
            DynSolValue::FixedBytes(alloy_primitives::B256::right_padding_from(&[0xa9, 0x05, 0x9c, 0xbb]), 4),
        ),
    ];
    let shapes = list.iter().map(|(p, _)| ParamShape::new(&p.name, &p.ty, &p.components)).collect();
    let values = list.into_iter().map(|(_, v)| v).collect();
    (shapes, values)
}

pub fn outcome(src: &str, shapes: &[ParamShape], values: &[DynSolValue]) -> Outcome {
    let Ok(expr) = parse(src) else { return Outcome::Syntax };
    let Ok(compiled) = compile(src, &expr, shapes) else { return Outcome::Type };
    let args: Vec<Option<Arg<'_>>> =
        shapes.iter().zip(values).map(|(shape, value)| Some(Arg { shape, value })).collect();
    match compiled.evaluate(&mut |leaf| leaf.eval(&args)) {
        Ok(true) => Outcome::True,
        Ok(false) => Outcome::False,
        Err(_) => Outcome::Runtime,
    }
}

fn check(cases: &[(&str, Outcome)]) {
    let (shapes, values) = probe_params();
    let mut failures = Vec::new();
    for (src, want) in cases {
        let got = outcome(src, &shapes, &values);
        if &got != want {
            failures.push(format!("{src}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The table of §4.9, row by row. Where chainwatch deliberately differs, the upstream result is
/// in the comment.
#[test]
fn upstream_runtime_probes() {
    use Outcome::*;
    check(&[
        ("flag == true", True),
        ("flag == TRUE", Syntax),
        ("flag == True", Syntax),
        ("amount > 10 && name == 'alice'", Syntax),
        ("amount > 10 and name == 'ALICE'", True),
        ("fee == 3000", True), // upstream: error, uint24 unsupported (chainwatch compares every width)
        ("amount > '999'", True),
        ("amount > 0x3e7", True),
        ("amount >= 1000.0", Type), // upstream: error "Failed to parse RHS value '1000.0' as U256"
        ("amount CONTAINS '10'", Type), // upstream: error, unsupported operator
        ("name == alice", True),
        ("name contains 'LIC'", True),
        (r"name == 'Al\'ice'", False),
        ("who == 0x58b704065b7aff3ed351052f8560019e05925023", True),
        ("who == '0X58B704065B7AFF3ED351052F8560019E05925023'", False),
        ("order contains 'x'", True),
        ("order.0 == 1", True), // upstream: error (tuple text is not JSON); chainwatch reaches components
        ("ids[1] == 2", True),
        ("ids contains 3", True),
        ("NOT amount > 1", Syntax),
        ("amount > 1 OR undefined_var == 2", Type), // upstream: true by short-circuit; chainwatch rejects the unknown name up front
        ("undefined_var == 2 OR amount > 1", Type), // upstream: error
    ]);
}

#[test]
fn unsigned_and_signed_integers() {
    use Outcome::*;
    check(&[
        ("amount == 1000", True),
        ("amount != 1000", False),
        ("amount < 1001 AND amount <= 1000 AND amount >= 1000", True),
        ("amount > 1000", False),
        ("amount == '0x3E8'", True),
        ("amount > -1", Type),
        ("amount == true", Type),
        ("max == 115792089237316195423570985008687907853269984665640564039457584007913129639935", True),
        ("max == 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", True),
        ("max > 115792089237316195423570985008687907853269984665640564039457584007913129639936", Type), // 2^256 does not fit
        ("delta < 0", True),
        ("delta == -42", True),
        ("delta > -43 AND delta < -41", True),
        ("delta == '-42'", True),
        ("delta == 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffd6", True), // two's complement
        ("min < -57896044618658097711785492504343953926634992332820282019728792003956564819967", True),
        ("min == -57896044618658097711785492504343953926634992332820282019728792003956564819968", True),
        ("delta contains 4", Type),
    ]);
}

#[test]
fn addresses_text_bytes_and_booleans() {
    use Outcome::*;
    check(&[
        ("who == '0x58B704065B7AFF3ED351052F8560019E05925023'", True),
        ("who == '58b704065b7aff3ed351052f8560019e05925023'", True), // the 0x prefix is optional
        ("who == '0x58b70406 5b7aff3ed351052f8560019e05925023'", True), // spaces are removed…
        ("who == ' 0x58b704065b7aff3ed351052f8560019e05925023'", False), // …after the 0x prefix is stripped, as upstream
        ("who != 0x0000000000000000000000000000000000000000", True),
        ("who > 0x00", Type),
        ("who == 5", Type),
        ("name starts_with 'AL'", True),
        ("name ends_with 'ICE'", True),
        ("name != 'bob'", True),
        ("name > 'a'", Type),
        ("name == 5", Type),
        ("hash starts_with '0xABAB'", True),
        ("hash == '0xabababababababababababababababababababababababababababababababab'", True),
        ("blob == 0xDEADBEEF", True),
        ("blob contains 'beef'", True),
        ("sel == '0xa9059cbb'", True), // bytes4: upstream only compares bytes/bytes32
        ("flag != false", True),
        ("flag == 'true'", Type),
        ("flag > true", Type),
    ]);
}

#[test]
fn arrays_tuples_and_paths() {
    use Outcome::*;
    check(&[
        ("ids == '[1,2,3]'", True),
        ("ids == '[1, 2, 3]'", True),
        ("ids != '[3,2,1]'", True),
        ("ids == 'not json'", Type),
        ("ids == 5", Type),
        ("ids contains '2'", True),
        ("ids contains 2.0", True), // numbers compare as decimals
        ("ids contains 4", False),
        ("ids[5] == 1", Runtime), // index out of bounds
        ("ids > 1", Type),
        ("owners contains '0x58B704065B7AFF3ED351052F8560019E05925023'", True),
        ("owners contains 0x0000000000000000000000000000000000000000", True),
        ("owners[0] == 0x58b704065b7aff3ed351052f8560019e05925023", True),
        (
            "owners == '[\"0x58b704065b7aff3ed351052f8560019e05925023\", \"0x0000000000000000000000000000000000000000\"]'",
            True,
        ),
        // tuple text is upstream's: strings, addresses and bytes inside it double-quoted
        ("order == '(1,\"x\")'", True),
        ("order == '( 1 , \"x\" )'", True), // whitespace outside quotes is ignored
        ("order != '(1,\"x\")'", False),
        ("order == '(1,\" x\")'", False), // ... but not inside them
        ("order == '(1,x)'", False),      // the unquoted form is not upstream's text
        ("order == '(1,\"X\")'", False),  // tuple equality is exact text
        ("order contains 1", True),
        ("order.label == 'X'", True),
        ("order.nope == 1", Type),
        ("order[0] == 1", Type),
        ("order > 1", Type),
        ("amount.x == 1", Type),
        ("meta.k == 'v'", True), // JSON text inside a string parameter, kinds from the JSON
        ("meta.n > 4", True),
        ("meta.list contains 2", True),
        ("meta.list[1] == 2", True),
        ("meta.who == 0x58B704065B7AFF3ED351052F8560019E05925023", True),
        ("meta.missing == 1", Runtime),
        ("name.x == 1", Runtime), // "Alice" is not JSON
    ]);
}

#[test]
fn evaluation_short_circuits_left_to_right() {
    use Outcome::*;
    // `ids[9]` fails at run time; short-circuiting decides whether it is evaluated at all
    check(&[
        ("amount > 1 OR ids[9] == 2", True),
        ("ids[9] == 2 OR amount > 1", Runtime),
        ("amount < 1 AND ids[9] == 2", False),
        ("amount > 1 AND ids[9] == 2", Runtime),
    ]);
}

#[test]
fn type_errors_point_at_the_comparison() {
    let (shapes, _) = probe_params();
    let src = "amount > 1 AND name > 'a'";
    let err = compile(src, &parse(src).unwrap(), &shapes).unwrap_err();
    assert_eq!(err.column, 16, "{err}");
    assert!(err.message.contains("does not apply to text"), "{err}");
    let src = "amount > 1 OR nope == 2";
    let err = compile(src, &parse(src).unwrap(), &shapes).unwrap_err();
    assert_eq!(err.column, 15, "{err}");
    assert!(err.message.contains("unknown parameter `nope`") && err.message.contains("amount"), "{err}");
}

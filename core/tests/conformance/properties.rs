//! Property tests: the parser never panics and reports positions inside the input; numeric
//! comparisons agree with native integer arithmetic for every literal form; text operators ignore
//! case; the tree shape follows precedence for generated expressions.

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::{I256, U256};
use chainwatch_core::evm::ParamShape;
use chainwatch_core::expr::{Node, parse};
use chainwatch_core::value::compare_text;
use proptest::prelude::*;

use crate::evm_compare::{Outcome, outcome};

type Holds = fn(std::cmp::Ordering) -> bool;

const OPS: [(&str, Holds); 6] = [
    ("==", |o| o.is_eq()),
    ("!=", |o| o.is_ne()),
    (">", |o| o.is_gt()),
    (">=", |o| o.is_ge()),
    ("<", |o| o.is_lt()),
    ("<=", |o| o.is_le()),
];

fn u256() -> impl Strategy<Value = U256> {
    prop_oneof![
        any::<u64>().prop_map(U256::from),
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
        Just(U256::ZERO),
        Just(U256::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_and_points_inside_the_input(s in "\\PC{0,80}") {
        if let Err(e) = parse(&s) {
            prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{e} for {s:?}");
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn parser_never_panics_on_expression_like_text(s in "[a-z0-9_ ()'\"=!<>.\\[\\]xX-]{0,60}") {
        let _ = parse(&s);
    }

    #[test]
    fn uint_comparisons_agree_with_native(a in u256(), b in u256(), op in 0usize..6, hex in any::<bool>(), quoted in any::<bool>()) {
        let shapes = [ParamShape::scalar("x", "uint256")];
        let values = [DynSolValue::Uint(a, 256)];
        let lit = if hex { format!("{b:#x}") } else { b.to_string() };
        let lit = if quoted { format!("'{lit}'") } else { lit };
        let (sym, holds) = OPS[op];
        let want = if holds(a.cmp(&b)) { Outcome::True } else { Outcome::False };
        prop_assert_eq!(outcome(&format!("x {sym} {lit}"), &shapes, &values), want);
    }

    #[test]
    fn int_comparisons_agree_with_native(a in any::<i128>(), b in any::<i128>(), op in 0usize..6) {
        let shapes = [ParamShape::scalar("x", "int128")];
        let values = [DynSolValue::Int(I256::try_from(a).unwrap(), 128)];
        let (sym, holds) = OPS[op];
        let want = if holds(a.cmp(&b)) { Outcome::True } else { Outcome::False };
        prop_assert_eq!(outcome(&format!("x {sym} {b}"), &shapes, &values), want);
    }

    #[test]
    fn text_equality_ignores_case(s in "[a-zA-Z0-9 ]{0,30}") {
        prop_assert!(compare_text(&s, chainwatch_core::expr::CmpOp::Eq, &s.to_uppercase()).unwrap());
        prop_assert!(compare_text(&s.to_lowercase(), chainwatch_core::expr::CmpOp::Contains, &s.to_uppercase()).unwrap());
    }

    #[test]
    fn and_binds_tighter_than_or(ops in proptest::collection::vec(any::<bool>(), 1..8)) {
        // c0 op0 c1 op1 c2 … with op = AND (true) / OR (false); evaluate with all leaves known
        let n = ops.len() + 1;
        let mut text = String::from("c0 == 1");
        for (i, and) in ops.iter().enumerate() {
            text.push_str(if *and { " AND " } else { " OR " });
            text.push_str(&format!("c{} == 1", i + 1));
        }
        let expr = parse(&text).unwrap();
        for mask in 0u32..(1 << n) {
            let leaf = |i: usize| mask & (1 << i) != 0;
            // reference: OR of AND-groups
            let mut groups = vec![leaf(0)];
            for (i, and) in ops.iter().enumerate() {
                if *and { let last = groups.last_mut().unwrap(); *last = *last && leaf(i + 1); } else { groups.push(leaf(i + 1)); }
            }
            let want = groups.into_iter().any(|g| g);
            let got: Result<bool, ()> = expr.evaluate(&mut |c| Ok(leaf(c.lhs.base[1..].parse::<usize>().unwrap())));
            prop_assert_eq!(got.unwrap(), want, "{}", text);
        }
        let mut leaves = Vec::new();
        expr.for_each_leaf(&mut |c| leaves.push(c.lhs.base.clone()));
        prop_assert_eq!(leaves.len(), n);
        prop_assert!(matches!(expr, Node::Or(..) | Node::And(..)));
    }
}

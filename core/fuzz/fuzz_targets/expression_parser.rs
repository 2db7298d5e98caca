//! Fuzzes the expression parser: it must never panic, and every error must point inside the input.
//! Run: `just fuzz` (cargo +nightly fuzz run expression_parser).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        match chainwatch_core::expr::parse(s) {
            Ok(expr) => {
                let mut n = 0;
                expr.for_each_leaf(&mut |_| n += 1);
                assert!(n > 0);
            }
            Err(e) => assert!(e.column >= 1 && e.column <= s.chars().count() + 1),
        }
    }
});

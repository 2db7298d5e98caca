//! Real parts run on one machine, for `chainwatch dev --demo` and for the tests: a local EVM chain
//! (anvil) with the demo ERC-20 ([`devnet`]), local notification receivers ([`receivers`]), and
//! where the test bed's broker, chain and API server are ([`testbed`]).
//!
//! Nothing here is part of the operator, ingester or worker: those crates use it only in their
//! tests.

pub mod broker;
pub mod devnet;
pub mod faulty_rpc;
pub mod receivers;
pub mod testbed;

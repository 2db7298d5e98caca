//! Conformance suite of the matching engine: grammar and comparison tables from the OpenZeppelin
//! Monitor reference (§4.2–4.9), property tests, and golden tests on real chain data from
//! `../shared/fixtures`. Expected results come from reading the semantics.

mod evm_compare;
mod evm_fixtures;
mod fixtures;
mod grammar;
mod properties;
mod stellar;

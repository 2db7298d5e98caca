//! chainwatch's domain, free of Kubernetes and Kafka: the normalized block model per chain, monitor
//! compilation, the filter expression language, ABI and XDR decoding, match rules and templates.
//!
//! Used by the ingester (block model), the worker (matching, templates), the operator (compiling
//! monitors to admit them) and the CLI (checks and dry runs).
//!
//! # Where the semantics deliberately differ from OpenZeppelin Monitor
//!
//! The reference is `oz-monitor-semantics.md`; everything else matches it (and the conformance
//! tests in `tests/conformance` run upstream's own fixtures). The differences, each tested:
//!
//! - Transaction status comes from the receipt, never inferred from logs ([`block::evm`]).
//! - Every `uintN`/`intN`/`bytesN` width is typed and compared as such; tuple members and array
//!   elements are addressable in expressions (`order.amount`, `path[0]`) ([`evm::compare`]).
//! - A parameter an expression names but no signature has is a compile error naming it, instead
//!   of a condition that silently never matches ([`mod@monitor::compile`]).
//! - `contains` works on address and string arrays ([`evm::compare`]).
//! - Stellar: a function only matches when the called contract is one of the monitor's addresses
//!   and its spec declares it (the address gate applies to Stellar too) ([`stellar::matcher`]).
//! - Scripts (`Bash` runs bash) run sandboxed — their own namespaces, root and user id, limits,
//!   no environment of the worker's — and everything they started dies at the timeout (in the
//!   worker and the tenant's script runner).
//! - Notifications carry an idempotency key ([`MonitorMatch::idempotency_key`]) and are
//!   deduplicated; reorgs are detected by parent-hash continuity (in the ingester).
pub mod block;
pub mod config;
pub mod evm;
pub mod expr;
pub mod matches;
pub mod monitor;
pub mod phase;
pub mod signature;
pub mod stellar;
pub mod template;
pub mod value;

pub use block::Block;
pub use matches::MonitorMatch;
pub use monitor::{
    AbiCache, CompileError, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile,
};

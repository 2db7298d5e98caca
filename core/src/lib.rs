//! chainwatch's domain, free of Kubernetes and Kafka: the normalized block model per chain, monitor
//! compilation, the filter expression language, ABI and XDR decoding, match rules and templates.
//!
//! Used by the ingester (block model), the worker (matching, templates), the operator (compiling
//! monitors to admit them) and the CLI (checks and dry runs).

pub mod block;
pub mod evm;
pub mod expr;
pub mod matches;
pub mod monitor;
pub mod signature;
pub mod stellar;
pub mod template;
pub mod trigger_checks;
pub mod upstream;
pub mod value;

pub use block::Block;
pub use matches::MonitorMatch;
pub use monitor::{
    AbiCache, CompileError, CompiledMonitor, MonitorKey, MonitorSource, NetworkIndex, compile,
};

//! Process plumbing shared by every chainwatch binary: argument groups, logging, the metrics
//! registry and admin server, the shutdown signal, retries with backoff, the message bus (Kafka and
//! in-memory) and the wire codec of its records.

pub mod admin;
pub mod backoff;
pub mod bus;
pub mod cache;
pub mod codec;
pub mod redact;
pub mod runner;
pub mod self_metrics;
pub mod shutdown;
pub mod telemetry;

pub use admin::{AdminArgs, Readiness};
pub use backoff::Backoff;
pub use telemetry::LogArgs;

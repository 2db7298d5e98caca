//! Reconcile errors, named after the step that failed, each with a bounded category (metric label
//! and event reason).

use chainwatch_platform::bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply { kind: String, name: String, source: kube::Error },
    #[error("deleting {kind} {name}: {source}")]
    Delete { kind: String, name: String, source: kube::Error },
    #[error("listing {kind}: {source}")]
    List { kind: String, source: kube::Error },
    #[error("writing the status of {name}: {source}")]
    Status { name: String, source: kube::Error },
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("Kafka topic {topic}: {source}")]
    Topic { topic: String, source: BusError },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Every [`Error::category`] (metrics expose each at zero).
    pub const CATEGORIES: [&'static str; 6] =
        ["ApplyFailed", "DeleteFailed", "ReadFailed", "StatusFailed", "KafkaFailed", "FinalizerFailed"];

    /// Bounded category for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::List { .. } | Error::Read { .. } => "ReadFailed",
            Error::Status { .. } => "StatusFailed",
            Error::Topic { .. } => "KafkaFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

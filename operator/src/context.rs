//! What every controller shares.

use std::sync::Arc;

use chainwatch_core::monitor::AbiCache;
use chainwatch_platform::bus::kafka::KafkaArgs;
use kube::Client;

use crate::events::Events;
use crate::metrics::OperatorMetrics;
use crate::network::build::PodSettings;
use crate::stores::Stores;

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub pods: PodSettings,
    /// Kafka administration (topics), if configured.
    pub kafka: Option<KafkaArgs>,
    pub metrics: OperatorMetrics,
    pub events: Events,
    pub abis: AbiCache,
    /// Whether KEDA's ScaledObject CRD is installed (detected by discovery at start).
    pub keda_installed: bool,
    /// Whether the RBAC API is served (it always is in a real cluster).
    pub rbac_available: bool,
    /// Caches of the chainwatch objects.
    pub stores: Stores,
}

pub type Ctx = Arc<Context>;

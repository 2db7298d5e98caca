//! What every controller shares.

use std::sync::Arc;

use chainwatch_core::monitor::AbiCache;
use chainwatch_platform::bus::kafka::KafkaArgs;
use kube::Client;

use crate::caches::Caches;
use crate::events::Events;
use crate::metrics::OperatorMetrics;
use crate::network::build::PodSettings;

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub pods: PodSettings,
    /// The operator's own ServiceAccount (granted reading tenant namespaces' Secrets and
    /// ConfigMaps, beside the workers').
    pub service_account: String,
    /// Kafka administration (topics), if configured: the flags (`network::kafka::current` gives
    /// what is in effect).
    pub kafka: Option<KafkaArgs>,
    /// The ConfigMap of the operator's namespace with the Kafka settings, if one is named.
    pub kafka_config_map: Option<String>,
    pub metrics: OperatorMetrics,
    pub events: Events,
    pub abis: AbiCache,
    /// Whether KEDA's ScaledObject CRD is installed (detected by discovery at start).
    pub keda_installed: bool,
    /// Whether the RBAC API is served (it always is in a real cluster).
    pub rbac_available: bool,
    /// One cache per kind, shared by every controller.
    pub caches: Caches,
}

pub type Ctx = Arc<Context>;

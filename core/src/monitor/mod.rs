//! Monitors compiled for evaluation: [`fn@compile`] turns a `MonitorSpec` (plus the contract specs its
//! ConfigMaps hold) into a [`CompiledMonitor`] for one chain type, or into [`CompileError`]s that
//! name the field and the fix. The operator reports these errors in status; the CLI prints them.

pub mod compile;
pub mod index;
pub mod stats;

use std::fmt;
use std::sync::Arc;

use chainwatch_crds::{ChainType, ScriptLanguage};
use serde::{Deserialize, Serialize};

pub use compile::{AbiCache, MonitorSource, compile, syntax_errors};
pub use index::NetworkIndex;

/// `namespace/name` of a Monitor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonitorKey {
    pub namespace: String,
    pub name: String,
}

impl MonitorKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for MonitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A problem that keeps a monitor from being admitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileError {
    /// Field path in the Monitor, e.g. `spec.matchConditions.events[0].expression`.
    pub field: String,
    /// Machine-readable reason (CamelCase), used as the condition reason.
    pub reason: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl CompileError {
    pub fn new(field: impl Into<String>, reason: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.to_string(), message: message.into() }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Reasons of [`CompileError`].
pub mod reasons {
    pub const EXPRESSION_SYNTAX: &str = "ExpressionSyntaxError";
    pub const EXPRESSION_TYPE: &str = "ExpressionTypeError";
    pub const INVALID_SIGNATURE: &str = "InvalidSignature";
    pub const INVALID_ADDRESS: &str = "InvalidAddress";
    pub const INVALID_CONTRACT_SPEC: &str = "InvalidContractSpec";
    pub const UNSUPPORTED_CHAIN: &str = "UnsupportedChain";
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    pub const INVALID_SCRIPT: &str = "InvalidScript";
}

/// A script ready to run (trigger conditions): content resolved from inline text or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResolvedScript {
    pub language: ScriptLanguage,
    pub source: String,
    #[serde(default)]
    pub arguments: Vec<String>,
    pub timeout_ms: u64,
}

/// The monitor as it was when it matched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MatchedMonitor {
    pub key: MonitorKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub display_name: String,
    pub triggers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_conditions: Vec<ResolvedScript>,
    /// OpenZeppelin Monitor's JSON of the monitor (contract specs stripped).
    pub upstream: Arc<serde_json::Value>,
    /// `spec.notifyAt` (empty: `final` only): [`crate::phase::notified`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_at: Vec<chainwatch_crds::NotifyPhase>,
}

/// A monitor ready for evaluation on networks of one chain type.
#[derive(Debug)]
pub struct CompiledMonitor {
    pub key: MonitorKey,
    /// The Monitor generation this was compiled from.
    pub generation: Option<i64>,
    /// `${monitor.name}`.
    pub display_name: String,
    /// Names of the Networks it watches.
    pub networks: Vec<String>,
    pub paused: bool,
    /// Names of its Triggers (same namespace).
    pub triggers: Vec<String>,
    pub trigger_conditions: Vec<ResolvedScript>,
    /// The conditions as written (copied into matches as `matched_on`).
    pub match_conditions: chainwatch_crds::MatchConditions,
    /// What every match of this monitor carries about it (with the monitor in OpenZeppelin
    /// Monitor's JSON shape for raw payloads and scripts), built once and shared by its matches.
    pub matched: Arc<MatchedMonitor>,
    pub chain: ChainMatcher,
    /// Things that do not stop admission but probably are mistakes (a signature no ABI declares).
    pub warnings: Vec<String>,
}

/// The chain-specific part of a compiled monitor.
#[derive(Debug)]
pub enum ChainMatcher {
    Evm(crate::evm::EvmMonitor),
    Stellar(crate::stellar::StellarMonitor),
}

impl ChainMatcher {
    pub fn chain_type(&self) -> ChainType {
        match self {
            ChainMatcher::Evm(_) => ChainType::Evm,
            ChainMatcher::Stellar(_) => ChainType::Stellar,
        }
    }
}

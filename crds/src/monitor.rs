//! `Monitor`: what a tenant watches on one or more networks (namespaced). Mirrors OpenZeppelin
//! Monitor's monitor JSON.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, ConfigMapSource, ScriptSpec, Time, conditions_schema, json_array_of_objects_schema,
};

/// What to watch: addresses, function calls, events and transaction conditions, and the Triggers
/// to fire when they match.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chainwatch.io",
    version = "v1alpha1",
    kind = "Monitor",
    plural = "monitors",
    namespaced,
    status = "MonitorStatus",
    shortname = "mon",
    shortname = "cwmon",
    category = "chainwatch",
    doc = "A monitor: conditions on blocks of one or more Networks and the Triggers to fire when they match.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".status.tenant"),
    printcolumn(name = "Networks", type_ = "string", json_path = ".spec.networks"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Matches", type_ = "integer", priority = 1, json_path = ".status.matchCount"),
    printcolumn(name = "Last Match", type_ = "date", json_path = ".status.lastMatchTime"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MonitorSpec {
    /// Name used in notifications as `${monitor.name}` (OpenZeppelin Monitor `name`). Default:
    /// metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,
    /// Names of the Networks to watch (OpenZeppelin Monitor `networks`, its slugs).
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub networks: Vec<String>,
    /// A paused monitor is never evaluated.
    #[serde(default)]
    pub paused: bool,
    /// Contracts or accounts to watch, each with an optional ABI / contract spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub addresses: Vec<MonitoredAddress>,
    /// Function, event and transaction conditions (OpenZeppelin Monitor `match_conditions`).
    #[serde(default)]
    pub match_conditions: MatchConditions,
    /// Scripts run on each match before notifying; a script whose last output line is `true` drops
    /// the match (OpenZeppelin Monitor `trigger_conditions`). Needs a Tenant that allows scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub trigger_conditions: Vec<ScriptSpec>,
    /// Names of Triggers in this namespace to fire on a match.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub triggers: Vec<String>,
    /// When the Triggers are told of a match: `final` (default: once, at the Network's
    /// confirmation depth or finality tag), `seen` (as soon as the block is at the chain's head),
    /// or both — `[seen, final]` sends a `seen` notification and a `final` one of the same key
    /// family (`<key>:seen`, `<key>`). `seen` needs a Network with `publishSeen: true`; on other
    /// Networks blocks are only seen once they are final. A `seen` notification of a block a reorg
    /// replaces is retracted, and `final` is never sent for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub notify_at: Vec<NotifyPhase>,
}

/// A moment a Monitor's Triggers are told of a match (`spec.notifyAt`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyPhase {
    /// The block is at the chain's head: it may still be replaced by a reorg.
    Seen,
    /// The block reached the Network's confirmation depth (or finality tag).
    Final,
}

impl NotifyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyPhase::Seen => "seen",
            NotifyPhase::Final => "final",
        }
    }
}

impl MonitorSpec {
    /// Whether the Monitor is told at `phase` (no `notifyAt`: at `final` only).
    pub fn notifies_at(&self, phase: NotifyPhase) -> bool {
        match self.notify_at.is_empty() {
            true => phase == NotifyPhase::Final,
            false => self.notify_at.contains(&phase),
        }
    }
}

/// A watched address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.contractSpec) && has(self.contractSpecFrom))")
    .message("set contractSpec (inline) or contractSpecFrom (ConfigMap), not both"))]
pub struct MonitoredAddress {
    /// The address: `0x…` for EVM, `C…`/`G…` strkey for Stellar, base58 for Solana.
    #[schemars(length(min = 1, max = 128))]
    pub address: String,
    /// The contract's ABI (EVM: the usual JSON ABI array) or contract spec (Stellar: an array of
    /// ScSpecEntry objects such as `{"function_v0": {...}}`), inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_array_of_objects_schema")]
    pub contract_spec: Option<Vec<serde_json::Value>>,
    /// The ABI / contract spec as JSON text in a ConfigMap key of this namespace (for large ABIs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_spec_from: Option<ConfigMapSource>,
}

/// How the three condition lists combine: with no conditions every transaction touching an address
/// matches; with only transaction conditions one of them must pass; with no transaction conditions
/// a function or event condition must match; otherwise both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchConditions {
    /// Function calls to match by signature, e.g. `transfer(address,uint256)`.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub functions: Vec<SignatureCondition>,
    /// Events to match by signature, e.g. `Transfer(address,address,uint256)`.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub events: Vec<SignatureCondition>,
    /// Transaction conditions on status and fixed transaction fields.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub transactions: Vec<TransactionCondition>,
}

/// A function or event condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCondition {
    /// Signature as `name(type,type,...)`; compared ignoring case and whitespace.
    #[schemars(length(min = 1, max = 2048))]
    pub signature: String,
    /// Filter expression over the decoded arguments, e.g. `value > 1000000 AND to != 0x0…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub expression: Option<String>,
}

/// A transaction condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionCondition {
    /// `Any` (default), `Success` or `Failure`. Decided by the transaction's receipt.
    #[serde(default)]
    pub status: TransactionStatus,
    /// Filter expression over transaction fields (`value`, `from`, `to`, `gas_used`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub expression: Option<String>,
}

/// Transaction status a condition requires.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TransactionStatus {
    /// Any outcome.
    #[default]
    Any,
    /// Executed successfully.
    Success,
    /// Reverted / failed.
    Failure,
}

/// Observed state. The operator writes admission (conditions, tenant); the worker writes match
/// counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorStatus {
    /// Ready (admitted and evaluated), plus Compiled, ReferencesResolved and WithinQuota.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation the operator last admitted or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Tenant owning this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Matches since the monitor was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_count: Option<u64>,
    /// Matches on blocks a reorg replaced: each notification already sent got a retraction, and
    /// none not yet sent ever will be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retracted_count: Option<u64>,
    /// Time of the newest match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_match_time: Option<Time>,
    /// Where the newest match happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_match: Option<LastMatch>,
}

/// Where a match happened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastMatch {
    /// Network name.
    pub network: String,
    /// Block number.
    pub block: u64,
    /// Transaction hash.
    pub transaction: String,
}

/// Monitor condition types (besides Ready) and reasons.
pub mod conditions {
    /// Expressions, signatures and ABIs compiled.
    pub const COMPILED: &str = "Compiled";
    /// Networks, Triggers, Secrets and ConfigMaps it names exist.
    pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";
    /// The Tenant's limits admit it.
    pub const WITHIN_QUOTA: &str = "WithinQuota";
}

//! `Tenant`: a team using chainwatch (cluster-scoped): its namespaces, its people and its limits.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, conditions_schema};

/// A tenant: the namespaces where its Monitors and Triggers live, who may edit them, and limits.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chainwatch.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    status = "TenantStatus",
    shortname = "cwtenant",
    category = "chainwatch",
    doc = "A tenant of chainwatch: its namespaces, the users and groups who edit Monitors and Triggers there, and its limits.",
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(name = "Monitors", type_ = "integer", json_path = ".status.monitors"),
    printcolumn(name = "Triggers", type_ = "integer", json_path = ".status.triggers"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Namespaces that belong to this tenant. Monitors and Triggers elsewhere are not admitted.
    #[schemars(
        length(min = 1, max = 64),
        inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,
    /// Users bound to the `chainwatch-tenant-editor` role in the tenant's namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// Groups bound to the `chainwatch-tenant-editor` role in the tenant's namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub groups: Vec<String>,
    /// Limits. Monitors and Triggers beyond them are not admitted (oldest first win).
    #[serde(default)]
    pub limits: TenantLimits,
}

/// Tenant limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    /// Most Monitors admitted across the tenant's namespaces. Default: no limit. Over the limit,
    /// the oldest are admitted (by creation time, which has one-second resolution; ties by
    /// namespace and name) and the others show `Ready=False` with reason `OverQuota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_monitors: Option<u32>,
    /// Most Triggers admitted across the tenant's namespaces. Default: no limit. The oldest are
    /// admitted, as for `maxMonitors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_triggers: Option<u32>,
    /// Most notifications per minute for the whole tenant; the rest are dropped and counted.
    /// Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub notifications_per_minute: Option<u32>,
    /// Whether Monitors may use trigger-condition scripts and Triggers may be scripts. Default false.
    #[serde(default)]
    pub allow_scripts: bool,
    /// Whether those scripts may use the network. Default false: a script runs with no network at
    /// all (its runner pod's egress is denied). Notification destinations are not affected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub script_network: bool,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Ready (RBAC in place in every namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation the operator last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Monitors in the tenant's namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<u32>,
    /// Of those, admitted (Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_monitors: Option<u32>,
    /// Triggers in the tenant's namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<u32>,
}

//! `app.kubernetes.io/*` labels of the objects the operator creates, and the selectors that find
//! them again (orphan cleanup deletes by these labels).

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The Network a child belongs to.
pub const NETWORK: &str = "chainwatch.io/network";
/// The Tenant an object belongs to.
pub const TENANT: &str = "chainwatch.io/tenant";

pub const INGESTER: &str = "ingester";
pub const WORKER: &str = "worker";
pub const TENANT_RBAC: &str = "tenant-rbac";
pub const SCRIPT_RUNNER: &str = "script-runner";
/// The `managed-by` label value, and the operator's field manager.
pub const MANAGER: &str = "chainwatch-operator";

/// Labels of a Network's child.
pub fn child(network: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.into(), "chainwatch".into()),
        (INSTANCE.into(), format!("{component}-{network}")),
        (COMPONENT.into(), component.into()),
        (PART_OF.into(), "chainwatch".into()),
        (MANAGED_BY.into(), MANAGER.into()),
        (NETWORK.into(), network.into()),
    ])
}

/// Pod selector of a Network's component.
pub fn selector(network: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (COMPONENT.into(), component.into()),
        (NETWORK.into(), network.into()),
        (NAME.into(), "chainwatch".into()),
    ])
}

/// Label selector (string form) of every child of a Network.
pub fn network_children(network: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{NETWORK}={network}")
}

/// Labels of a Tenant's objects.
pub fn tenant(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.into(), "chainwatch".into()),
        (COMPONENT.into(), TENANT_RBAC.into()),
        (PART_OF.into(), "chainwatch".into()),
        (MANAGED_BY.into(), MANAGER.into()),
        (TENANT.into(), tenant.into()),
    ])
}

/// Labels of a component the operator runs for a tenant (its script runner).
pub fn tenant_component(tenant: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = self::tenant(tenant);
    l.insert(COMPONENT.into(), component.into());
    l
}

pub fn tenant_children(tenant: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{TENANT}={tenant}")
}

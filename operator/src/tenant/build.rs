//! What a Tenant gets in each of its namespaces, as pure functions:
//!
//! * `chainwatch-tenant-editors`: its users and groups bound to the aggregated ClusterRole
//!   `chainwatch-tenant-editor` (Monitors, Triggers, and the Secrets and ConfigMaps they read —
//!   nothing else);
//! * `chainwatch-platform-readers`: the operator's and the workers' ServiceAccounts bound to
//!   `chainwatch-platform-reader` (read Secrets and ConfigMaps). This is the only way either reads
//!   a Secret outside its own namespace: the platform reads tenant namespaces, and nothing else.
//!
//! Both bindings have fixed names, so the operator's permission to change and delete
//! RoleBindings is limited to these two names (`config/rbac/operator.yaml`).

use chainwatch_crds::Tenant;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::labels;

/// The ClusterRole tenants are bound to (installed by `config/rbac`).
pub const EDITOR_ROLE: &str = "chainwatch-tenant-editor";
/// The binding of the tenant's people.
pub const EDITORS_BINDING: &str = "chainwatch-tenant-editors";
/// The ClusterRole that lets the platform read a tenant namespace's Secrets and ConfigMaps.
pub const READER_ROLE: &str = "chainwatch-platform-reader";
/// The binding of the operator and the workers.
pub const READERS_BINDING: &str = "chainwatch-platform-readers";

const RBAC: &str = "rbac.authorization.k8s.io";

fn meta(tenant: &Tenant, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels::tenant(&tenant.name_any())),
        owner_references: tenant.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn cluster_role(name: &str) -> RoleRef {
    RoleRef { api_group: RBAC.into(), kind: "ClusterRole".into(), name: name.into() }
}

/// The tenant's users and groups, editors in `namespace`.
pub fn editors(tenant: &Tenant, namespace: &str) -> RoleBinding {
    let subject = |kind: &str, name: &String| Subject {
        kind: kind.into(),
        name: name.clone(),
        api_group: Some(RBAC.into()),
        namespace: None,
    };
    let subjects = tenant
        .spec
        .users
        .iter()
        .map(|u| subject("User", u))
        .chain(tenant.spec.groups.iter().map(|g| subject("Group", g)))
        .collect();
    RoleBinding {
        metadata: meta(tenant, EDITORS_BINDING, namespace),
        role_ref: cluster_role(EDITOR_ROLE),
        subjects: Some(subjects),
    }
}

/// The platform's ServiceAccounts (`(namespace, name)`), readers of `namespace`'s Secrets and
/// ConfigMaps.
pub fn platform_readers(tenant: &Tenant, namespace: &str, accounts: &[(&str, &str)]) -> RoleBinding {
    RoleBinding {
        metadata: meta(tenant, READERS_BINDING, namespace),
        role_ref: cluster_role(READER_ROLE),
        subjects: Some(
            accounts
                .iter()
                .map(|(ns, name)| Subject {
                    kind: "ServiceAccount".into(),
                    name: (*name).into(),
                    namespace: Some((*ns).into()),
                    api_group: None,
                })
                .collect(),
        ),
    }
}

/// A namespace created for a tenant (never deleted with it: the data inside is the tenant's).
pub fn namespace(tenant: &Tenant, name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::tenant(&tenant.name_any())),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> Tenant {
        let mut t: Tenant = serde_json::from_value(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"namespaces": ["acme"], "users": ["alice@acme.example"], "groups": ["acme-oncall"]}}),
        )
        .unwrap();
        t.metadata.uid = Some("u1".into());
        t
    }

    #[test]
    fn users_and_groups_are_bound_to_the_editor_role() {
        let rb = editors(&tenant(), "acme");
        assert_eq!(rb.metadata.name.as_deref(), Some(EDITORS_BINDING));
        assert_eq!(rb.role_ref.name, EDITOR_ROLE);
        let subjects: Vec<(String, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
        assert_eq!(
            subjects,
            [("User".into(), "alice@acme.example".into()), ("Group".into(), "acme-oncall".into())]
        );
        assert_eq!(rb.metadata.labels.unwrap()[labels::TENANT], "acme");
    }

    #[test]
    fn the_platform_reads_tenant_namespaces_through_one_binding() {
        let rb = platform_readers(
            &tenant(),
            "acme",
            &[("cw", "chainwatch-operator"), ("cw", "chainwatch-worker")],
        );
        assert_eq!(
            (rb.metadata.name.as_deref(), rb.role_ref.name.as_str()),
            (Some(READERS_BINDING), READER_ROLE)
        );
        let subjects: Vec<(String, Option<String>, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.namespace, s.name)).collect();
        assert_eq!(
            subjects,
            [
                ("ServiceAccount".into(), Some("cw".into()), "chainwatch-operator".into()),
                ("ServiceAccount".into(), Some("cw".into()), "chainwatch-worker".into())
            ]
        );
    }
}

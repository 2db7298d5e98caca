//! A Tenant's RoleBindings: in each of its namespaces, its users and groups bound to the aggregated
//! ClusterRole `chainwatch-tenant-editor` (Monitors, Triggers, and the Secrets and ConfigMaps they
//! read — nothing else).

use chainwatch_crds::Tenant;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::labels;

/// The ClusterRole tenants are bound to (installed by `config/rbac`).
pub const EDITOR_ROLE: &str = "chainwatch-tenant-editor";

pub fn role_binding_name(tenant: &str) -> String {
    format!("chainwatch-tenant-{tenant}")
}

pub fn role_binding(tenant: &Tenant, namespace: &str) -> RoleBinding {
    let name = tenant.name_any();
    let rbac = "rbac.authorization.k8s.io".to_string();
    let subjects = tenant
        .spec
        .users
        .iter()
        .map(|u| Subject {
            kind: "User".into(),
            name: u.clone(),
            api_group: Some(rbac.clone()),
            namespace: None,
        })
        .chain(tenant.spec.groups.iter().map(|g| Subject {
            kind: "Group".into(),
            name: g.clone(),
            api_group: Some(rbac.clone()),
            namespace: None,
        }))
        .collect();
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(role_binding_name(&name)),
            namespace: Some(namespace.into()),
            labels: Some(labels::tenant(&name)),
            owner_references: tenant.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        role_ref: RoleRef { api_group: rbac, kind: "ClusterRole".into(), name: EDITOR_ROLE.into() },
        subjects: Some(subjects),
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

    #[test]
    fn users_and_groups_are_bound_to_the_editor_role() {
        let mut t: Tenant = serde_json::from_value(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"namespaces": ["acme"], "users": ["alice@acme.example"], "groups": ["acme-oncall"]}}),
        )
        .unwrap();
        t.metadata.uid = Some("u1".into());
        let rb = role_binding(&t, "acme");
        assert_eq!(rb.metadata.name.as_deref(), Some("chainwatch-tenant-acme"));
        assert_eq!(rb.role_ref.name, EDITOR_ROLE);
        let subjects: Vec<(String, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
        assert_eq!(
            subjects,
            [("User".into(), "alice@acme.example".into()), ("Group".into(), "acme-oncall".into())]
        );
        assert_eq!(rb.metadata.labels.unwrap()[labels::TENANT], "acme");
    }
}

//! Admission of a Tenant: which of its namespaces it owns ([`owner_of`](super::owner_of)) and which
//! another, older Tenant already claims.

use chainwatch_crds::Tenant;

use super::Catalog;

/// The verdict on a Tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantVerdict {
    /// The namespaces it owns.
    pub owned: Vec<String>,
    /// `(namespace, owner)` of each namespace an older Tenant owns.
    pub conflicts: Vec<(String, String)>,
}

impl TenantVerdict {
    /// Messages of the conflicts (reason `NamespaceConflict`).
    pub fn conflict_messages(&self) -> Vec<String> {
        self.conflicts
            .iter()
            .map(|(ns, owner)| format!("namespace {ns} already belongs to tenant {owner} (the oldest claim wins); remove it from spec.namespaces"))
            .collect()
    }
}

pub fn admit_tenant(t: &Tenant, catalog: &dyn Catalog) -> TenantVerdict {
    let me = t.metadata.name.clone().unwrap_or_default();
    let mut verdict = TenantVerdict { owned: Vec::new(), conflicts: Vec::new() };
    for ns in &t.spec.namespaces {
        match catalog.tenant_of(ns).and_then(|o| o.metadata.name.clone()) {
            Some(owner) if owner != me => verdict.conflicts.push((ns.clone(), owner)),
            // the owner, or a Tenant the catalog has not seen yet (it claims what no one else does)
            _ => verdict.owned.push(ns.clone()),
        }
    }
    verdict
}

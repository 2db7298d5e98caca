//! One model of "what refers to what": admission of Monitors, Triggers, Tenants and the settings
//! of Networks, as pure functions of the object and a [`Catalog`] of what it refers to.
//!
//! The operator (over its caches), the worker (over its state) and the CLI (over files) each
//! implement [`Catalog`]; none of them decides admission itself. The rules shared by all three —
//! which Tenant owns a namespace, how a Secret value is decoded, the quota rank — are
//! [`catalog`]'s provided methods.

pub mod catalog;
pub mod monitor;
pub mod network;
pub mod objects;
pub mod tenant;
pub mod trigger;
pub mod trigger_checks;

pub use catalog::{Catalog, Lookup, Peer, Quota, RefProblem, owner_of, rank_in, secret_text};
pub use monitor::{
    Compilation, Compiler, MonitorVerdict, NotAdmitted, Problem, admit_monitor, admitted_by_operator,
    compile_monitor,
};
pub use network::{Endpoint, NetworkSettings, SpecError, network_settings};
pub use objects::ObjectSet;
pub use tenant::{TenantVerdict, admit_tenant};
pub use trigger::{ResolvedTrigger, TriggerVerdict, admit_trigger, resolve_trigger};

/// One condition as admission decides it: type, status, reason and a message naming the field
/// and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub type_: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Check {
    /// Messages are capped at 2 KiB (conditions are read by people, and status has a size).
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > 2048 {
            let mut cut = 2045;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        Self { type_: type_.into(), ok, reason: reason.into(), message }
    }

    /// `Ready` from `(reason, message)` problems: False with the first reason and every message,
    /// or True with `ok_message`.
    pub fn ready_from(problems: &[(&'static str, String)], ok_message: impl Into<String>) -> Check {
        match problems.first() {
            None => Check::new("Ready", true, "Ready", ok_message),
            Some((reason, _)) => Check::new(
                "Ready",
                false,
                reason,
                problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
            ),
        }
    }
}

#[cfg(test)]
mod tests;

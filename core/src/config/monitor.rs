//! Admission of a Monitor: its Tenant, the Networks and Triggers it names, its ConfigMaps, its
//! compilation for each chain type among its Networks, the Tenant's limits. Every problem is a
//! [`Check`] whose message names the field and the fix.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;

use chainwatch_crds::monitor::conditions::{COMPILED, REFERENCES_RESOLVED, WITHIN_QUOTA};
use chainwatch_crds::{ChainType, ConfigMapKeyRef, Monitor};

use super::{Catalog, Check, Quota, RefProblem};
use crate::monitor::{CompileError, CompiledMonitor, MonitorKey, MonitorSource};

/// Compiles monitors (the operator and the CLI: an [`AbiCache`](crate::monitor::AbiCache); the
/// worker: a cache of compiled monitors in front of one).
pub trait Compiler {
    fn compile(
        &self,
        source: &MonitorSource<'_>,
        chain: ChainType,
    ) -> Result<Arc<CompiledMonitor>, Vec<CompileError>>;
}

impl Compiler for crate::monitor::AbiCache {
    fn compile(
        &self,
        source: &MonitorSource<'_>,
        chain: ChainType,
    ) -> Result<Arc<CompiledMonitor>, Vec<CompileError>> {
        crate::monitor::compile(source, chain, self).map(Arc::new)
    }
}

/// A monitor compiled for the chain types of its Networks.
#[derive(Debug, Default)]
pub struct Compilation {
    /// One per chain type among the monitor's known Networks.
    pub compiled: Vec<Arc<CompiledMonitor>>,
    pub errors: Vec<CompileError>,
    pub warnings: Vec<String>,
    /// Chain types it was compiled for.
    pub chains: BTreeSet<ChainType>,
    /// A ConfigMap could not be read yet.
    pub unsettled: bool,
}

/// Compiles `m` for every chain type among its Networks that exist.
pub fn compile_monitor(m: &Monitor, catalog: &dyn Catalog, compiler: &dyn Compiler) -> Compilation {
    let ns = m.metadata.namespace.clone().unwrap_or_default();
    let key = MonitorKey::new(&ns, m.metadata.name.clone().unwrap_or_default());
    let chains: BTreeSet<ChainType> =
        m.spec.networks.iter().filter_map(|n| catalog.network(n).map(|n| n.spec.chain_type)).collect();
    let unsettled = Cell::new(false);
    let reader = |r: &ConfigMapKeyRef| {
        catalog.config_map_value(&ns, r).map_err(|p: RefProblem| {
            if p.is_transient() {
                unsettled.set(true);
            }
            p.to_string()
        })
    };
    let source =
        MonitorSource { key, generation: m.metadata.generation, spec: &m.spec, config_maps: &reader };
    let mut out = Compilation { chains: chains.clone(), ..Default::default() };
    if chains.is_empty() {
        // no chain to compile for yet: what the grammar alone can say is said now
        out.errors = crate::monitor::syntax_errors(&m.spec);
    }
    for chain in chains {
        match compiler.compile(&source, chain) {
            Ok(c) => {
                out.warnings.extend(c.warnings.iter().cloned());
                out.compiled.push(c);
            }
            Err(e) => out.errors.extend(e),
        }
    }
    out.errors.dedup();
    out.warnings.sort();
    out.warnings.dedup();
    out.unsettled = unsettled.get();
    out
}

/// One problem found, with the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The condition it falls under (`Compiled`, `ReferencesResolved`, `WithinQuota`).
    pub condition: &'static str,
    pub field: Option<String>,
    pub reason: String,
    /// What is wrong and the fix, without the field.
    pub message: String,
}

/// The verdict on a Monitor.
#[derive(Debug)]
pub struct MonitorVerdict {
    /// Every problem, field by field (what `chainwatch check` prints).
    pub problems: Vec<Problem>,
    /// Likely mistakes that do not stop admission.
    pub warnings: Vec<String>,
    /// The Tenant that owns its namespace.
    pub tenant: Option<String>,
    /// Ready first, then Compiled, ReferencesResolved, WithinQuota.
    pub conditions: Vec<Check>,
    pub admitted: bool,
    /// A reference could not be read yet: the verdict may change without any object changing.
    pub unsettled: bool,
    /// What compiled (empty unless Compiled is True).
    pub compiled: Vec<Arc<CompiledMonitor>>,
}

impl MonitorVerdict {
    pub fn ready(&self) -> &Check {
        &self.conditions[0]
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
    }
}

/// `spec.notifyAt: [seen, …]` on Networks that publish no `seen` blocks: told only once a block
/// is final there.
fn seen_without_publish_seen(m: &Monitor, catalog: &dyn Catalog) -> Vec<String> {
    if !m.spec.notify_at.contains(&chainwatch_crds::NotifyPhase::Seen) {
        return Vec::new();
    }
    m.spec
        .networks
        .iter()
        .filter(|n| catalog.network(n).is_some_and(|net| !net.spec.publish_seen))
        .map(|n| {
            format!(
                "spec.notifyAt: Network {n} does not publish seen blocks (spec.publishSeen is false), so its blocks are notified only once they are final; ask the platform team to set publishSeen: true on it"
            )
        })
        .collect()
}

/// Admits (or not) a Monitor.
pub fn admit_monitor(m: &Monitor, catalog: &dyn Catalog, compiler: &dyn Compiler) -> MonitorVerdict {
    let ns = m.metadata.namespace.clone().unwrap_or_default();
    let name = m.metadata.name.clone().unwrap_or_default();

    // references
    let mut problems = Vec::new();
    let problem = |condition, field: String, reason: &str, message: String| Problem {
        condition,
        field: Some(field),
        reason: reason.into(),
        message,
    };
    let networks = catalog.network_names();
    for (i, n) in m.spec.networks.iter().enumerate() {
        if catalog.network(n).is_none() {
            problems.push(problem(
                REFERENCES_RESOLVED,
                format!("spec.networks[{i}]"),
                "NetworkNotFound",
                format!(
                    "Network {n} does not exist (existing: {}); create it or fix the name",
                    list(&networks)
                ),
            ));
        }
    }
    let triggers = catalog.trigger_names(&ns);
    for (i, t) in m.spec.triggers.iter().enumerate() {
        if !triggers.contains(t) {
            problems.push(problem(
                REFERENCES_RESOLVED,
                format!("spec.triggers[{i}]"),
                "TriggerNotFound",
                format!(
                    "Trigger {t} does not exist in namespace {ns} (existing: {}); create it or fix the name",
                    list(&triggers)
                ),
            ));
        }
    }
    let refs: Vec<&Problem> = problems.iter().collect();
    let references = match refs.first() {
        None => Check::new(REFERENCES_RESOLVED, true, "Resolved", "every Network and Trigger named exists"),
        Some(first) => Check::new(
            REFERENCES_RESOLVED,
            false,
            &first.reason,
            refs.iter()
                .map(|p| format!("{}: {}", p.field.as_deref().unwrap_or_default(), p.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };

    // compilation, once per chain type among its networks
    let mut compilation = compile_monitor(m, catalog, compiler);
    compilation.warnings.extend(seen_without_publish_seen(m, catalog));
    let compiled = match compilation.errors.first() {
        None if compilation.chains.is_empty() => Check::new(
            COMPILED,
            false,
            "NoKnownNetwork",
            "none of spec.networks exists yet, so the chain type to compile for is unknown",
        ),
        None if compilation.warnings.is_empty() => {
            Check::new(COMPILED, true, "Compiled", "expressions, signatures and contract specs compiled")
        }
        None => Check::new(
            COMPILED,
            true,
            "CompiledWithWarnings",
            format!("compiled; warnings: {}", compilation.warnings.join("; ")),
        ),
        Some(first) => Check::new(
            COMPILED,
            false,
            if compilation.unsettled { "ReferencePending" } else { &first.reason },
            compilation.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        ),
    };

    problems.extend(compilation.errors.iter().map(|e| Problem {
        condition: COMPILED,
        field: Some(e.field.clone()),
        reason: e.reason.clone(),
        message: e.message.clone(),
    }));

    // tenant, scripts, quota
    let tenant = catalog.tenant_of(&ns);
    let quota = match &tenant {
        None => Check::new(
            WITHIN_QUOTA,
            false,
            "NoTenant",
            format!("namespace {ns} belongs to no Tenant: create a Tenant whose spec.namespaces lists {ns}"),
        ),
        Some(t) => {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let rank = t.spec.limits.max_monitors.and_then(|_| catalog.rank(Quota::Monitors, t, &ns, &name));
            match (t.spec.limits.max_monitors, rank) {
                (Some(max), Some(r)) if r as u32 >= max => Check::new(
                    WITHIN_QUOTA,
                    false,
                    "OverQuota",
                    format!(
                        "tenant {tname} allows {max} monitors (spec.limits.maxMonitors); this is monitor number {} by creation time: delete a monitor or raise the limit",
                        r + 1
                    ),
                ),
                _ if !m.spec.trigger_conditions.is_empty() && !t.spec.limits.allow_scripts => Check::new(
                    WITHIN_QUOTA,
                    false,
                    "ScriptsNotAllowed",
                    format!(
                        "spec.triggerConditions: tenant {tname} does not allow scripts (spec.limits.allowScripts); remove the scripts or ask for the limit"
                    ),
                ),
                _ => Check::new(WITHIN_QUOTA, true, "WithinQuota", format!("admitted under tenant {tname}")),
            }
        }
    };

    if !quota.ok {
        let field = (quota.reason == "ScriptsNotAllowed").then(|| "spec.triggerConditions".to_string());
        let message = match &field {
            Some(f) => quota.message.strip_prefix(&format!("{f}: ")).unwrap_or(&quota.message).to_string(),
            None => quota.message.clone(),
        };
        problems.push(Problem { condition: WITHIN_QUOTA, field, reason: quota.reason.clone(), message });
    }
    let ready = if !quota.ok && quota.reason == "NoTenant" {
        Check::new("Ready", false, "NoTenant", quota.message.clone())
    } else if !references.ok {
        Check::new("Ready", false, &references.reason, references.message.clone())
    } else if !compiled.ok {
        Check::new("Ready", false, &compiled.reason, compiled.message.clone())
    } else if !quota.ok {
        Check::new("Ready", false, &quota.reason, quota.message.clone())
    } else if m.spec.paused {
        Check::new("Ready", true, "Paused", "admitted; paused monitors are not evaluated")
    } else {
        Check::new("Ready", true, "Admitted", format!("evaluated on {}", m.spec.networks.join(", ")))
    };
    let admitted = ready.ok;
    MonitorVerdict {
        problems,
        warnings: compilation.warnings,
        tenant: tenant.and_then(|t| t.metadata.name.clone()),
        conditions: vec![ready, compiled, references, quota],
        admitted,
        unsettled: compilation.unsettled,
        compiled: if admitted { compilation.compiled } else { Vec::new() },
    }
}

/// Why the worker does not evaluate a monitor it runs behind the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    #[error("not yet admitted by the operator (no status)")]
    NoStatus,
    #[error("not yet admitted by the operator (no Ready condition)")]
    NoReady,
    #[error("not admitted: {reason} ({message})")]
    Rejected { reason: String, message: String },
    #[error("the operator has not admitted the current generation yet")]
    Stale,
}

/// Whether the operator admitted the monitor's current generation (`Ready=True` with
/// `observedGeneration` equal to `metadata.generation`).
pub fn admitted_by_operator(m: &Monitor) -> Result<(), NotAdmitted> {
    let status = m.status.as_ref().ok_or(NotAdmitted::NoStatus)?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").ok_or(NotAdmitted::NoReady)?;
    if ready.status != "True" {
        return Err(NotAdmitted::Rejected { reason: ready.reason.clone(), message: ready.message.clone() });
    }
    if status.observed_generation != m.metadata.generation {
        return Err(NotAdmitted::Stale);
    }
    Ok(())
}

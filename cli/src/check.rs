//! `chainwatch check`: offline validation of CR YAML — the CRD schema and CEL rules as the API
//! server applies them, then what the operator checks (the same monitor compiler, network
//! settings, trigger secrets), and the references between the files. Problems name the file, the
//! object, the field and the fix; the exit status says whether there were errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chainwatch_core::config::{Catalog, admit_monitor, admit_tenant, admit_trigger, network_settings};
use chainwatch_core::monitor::AbiCache;
use chainwatch_crds::ChainType;
use kube::ResourceExt;
use serde::Serialize;

use crate::manifests::{self, Files, Objects, Source};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files and directories of CR YAML.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Namespace of namespaced objects that do not set one.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Chain type of a Network that is not among the files, e.g. `ethereum-mainnet=evm`
    /// (monitors on it are then compiled for that chain). Repeatable.
    #[arg(long = "network-type", value_name = "NAME=TYPE", value_parser = parse_network_type)]
    pub network_types: Vec<(String, ChainType)>,
    /// Treat warnings (references to objects not among the files, …) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Human)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

fn parse_network_type(s: &str) -> Result<(String, ChainType), String> {
    let (name, t) = s.split_once('=').ok_or("expected NAME=TYPE, e.g. ethereum-mainnet=evm")?;
    let chain: ChainType = serde_json::from_value(serde_json::Value::String(t.to_string()))
        .map_err(|_| format!("unknown chain type `{t}` (evm, stellar, solana, midnight)"))?;
    Ok((name.to_string(), chain))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub file: String,
    pub object: Option<String>,
    pub field: Option<String>,
    pub severity: Severity,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {sev}", self.file)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(
        &mut self,
        source: &Source,
        object: Option<String>,
        field: Option<String>,
        severity: Severity,
        message: impl Into<String>,
    ) {
        self.0.push(Finding { file: source.to_string(), object, field, severity, message: message.into() });
    }
}

/// A Network that is not among the files, of the chain type `--network-type` gives.
fn assumed_network(name: &str, chain: ChainType) -> chainwatch_crds::Network {
    serde_json::from_value(serde_json::json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network",
        "metadata": {"name": name}, "spec": {"type": chain, "rpc": [{"url": "https://assumed.invalid"}]}}))
    .expect("a Network")
}

/// What the operator would say of an object: `Ready` and its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub object: String,
    pub ready: bool,
    pub reason: String,
}

/// The findings (sorted by file) and the verdicts (sorted by object).
pub struct Report {
    pub findings: Vec<Finding>,
    pub verdicts: Vec<Verdict>,
}

/// The `Ready` verdicts of the Monitors, Triggers and Tenants among the files, by the operator's
/// admission over the files.
fn verdicts(o: &Objects, catalog: &Files<'_>) -> Vec<Verdict> {
    let abis = AbiCache::default();
    let mut out = Vec::new();
    for (_, m) in &o.monitors {
        let v = admit_monitor(m, catalog, &abis);
        let object = format!("Monitor {}/{}", m.namespace().unwrap_or_default(), m.name_any());
        out.push(Verdict { object, ready: v.admitted, reason: v.ready().reason.clone() });
    }
    for (_, t) in &o.triggers {
        let v = admit_trigger(t, catalog);
        let object = format!("Trigger {}/{}", t.namespace().unwrap_or_default(), t.name_any());
        out.push(Verdict { object, ready: v.ready.ok, reason: v.ready.reason });
    }
    for (_, t) in &o.tenants {
        let v = admit_tenant(t, catalog);
        let (ready, reason) =
            if v.conflicts.is_empty() { (true, "Ready") } else { (false, "NamespaceConflict") };
        out.push(Verdict { object: format!("Tenant {}", t.name_any()), ready, reason: reason.into() });
    }
    out.sort_by(|a, b| a.object.cmp(&b.object));
    out
}

/// Checks the files.
pub fn check(args: &CheckArgs) -> Report {
    let (docs, load_errors) = manifests::load(&args.paths, args.recursive);
    let nothing = (docs.is_empty() && load_errors.is_empty()).then(|| Finding {
        // checking nothing must not pass a CI pipeline
        file: args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        object: None,
        field: None,
        severity: Severity::Error,
        message: manifests::nothing_found(&args.paths, args.recursive),
    });
    let mut report = check_docs(&docs, &args.namespace, &args.network_types);
    report.findings.extend(nothing);
    report.findings.extend(load_errors.into_iter().map(|e| Finding {
        file: e.file.display().to_string(),
        object: None,
        field: None,
        severity: Severity::Error,
        message: e.message,
    }));
    report.findings.sort();
    report
}

/// Checks documents (read from files, or made by `import`): `namespace` for namespaced objects
/// that set none, `network_types` for Networks that are not among them.
pub fn check_docs(docs: &[manifests::Doc], namespace: &str, network_types: &[(String, ChainType)]) -> Report {
    let mut out = Findings(Vec::new());

    // 1. the schema and CEL rules, as the API server applies them
    let mut schema_failed = BTreeSet::new();
    for d in docs {
        if let Some(violations) = chainwatch_crds::validate::validate(&d.value) {
            for v in &violations {
                out.add(
                    &d.source,
                    Some(d.describe()),
                    Some(v.field.clone()),
                    Severity::Error,
                    v.message.clone(),
                );
            }
            if !violations.is_empty() {
                schema_failed.insert(d.source.clone());
            }
        }
    }
    let (objects, unparsed) = Objects::from_docs(docs, namespace);
    for (d, e) in unparsed {
        if !schema_failed.contains(&d.source) {
            out.add(&d.source, Some(d.describe()), None, Severity::Error, e);
        }
    }

    // 2. duplicates
    let mut seen: BTreeMap<String, Source> = BTreeMap::new();
    for d in docs {
        let name = d.describe();
        if let Some(first) = seen.get(&name) {
            out.add(
                &d.source,
                Some(name.clone()),
                None,
                Severity::Error,
                format!("defined twice (first in {first}); the second replaces the first when applied"),
            );
        } else {
            seen.insert(name, d.source.clone());
        }
    }

    let mut set = objects.object_set();
    for (name, chain) in network_types {
        if !set.networks.contains_key(name) {
            set.insert_network(assumed_network(name, *chain));
        }
    }
    let catalog = Files(&set);
    check_networks(&objects, &schema_failed, &mut out);
    check_triggers(&objects, &catalog, &schema_failed, &mut out);
    check_monitors(&objects, &catalog, &schema_failed, &mut out);
    check_tenants(&objects, &catalog, &mut out);
    let verdicts = verdicts(&objects, &catalog);

    let mut findings = out.0;
    findings.sort();
    findings.dedup();
    Report { findings, verdicts }
}

fn check_networks(o: &Objects, skip: &BTreeSet<Source>, out: &mut Findings) {
    for (src, n) in o.networks.iter().filter(|(s, _)| !skip.contains(s)) {
        // endpoint Secrets not among the files, or empty there (an import from an unset
        // environment variable), are the cluster's to fill: assume a well-formed URL
        let lookup = |r: &chainwatch_crds::SecretKeyRef| {
            Ok(o.any_secret_value(r)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://secret.invalid".to_string()))
        };
        if let Err(e) = network_settings(&n.spec, &lookup) {
            out.add(
                src,
                Some(format!("Network {}", n.name_any())),
                Some(e.field),
                Severity::Error,
                e.message,
            );
        }
    }
}

/// `spec.x: message` → (`spec.x`, `message`).
fn split_field(message: &str) -> (Option<String>, String) {
    match message.split_once(": ") {
        Some((f, m)) if f.starts_with("spec.") => (Some(f.to_string()), m.to_string()),
        _ => (None, message.to_string()),
    }
}

/// Problems about the Tenant (quota, scripts) depend on the cluster when no Tenant is among the
/// files: they are said only when one is, and as warnings.
fn tenant_problem(reason: &str) -> bool {
    matches!(reason, "NoTenant" | "OverQuota" | "ScriptsNotAllowed")
}

fn check_triggers(o: &Objects, catalog: &Files<'_>, skip: &BTreeSet<Source>, out: &mut Findings) {
    for (src, t) in o.triggers.iter().filter(|(s, _)| !skip.contains(s)) {
        let object = Some(format!("Trigger {}/{}", t.namespace().unwrap_or_default(), t.name_any()));
        for (reason, message) in admit_trigger(t, catalog).problems {
            let severity = if reason == "ReferencePending" || tenant_problem(reason) {
                if tenant_problem(reason) && o.tenants.is_empty() {
                    continue;
                }
                Severity::Warning
            } else {
                Severity::Error
            };
            let (field, message) = split_field(&message);
            out.add(src, object.clone(), field, severity, message);
        }
    }
}

/// The name a reference field (`spec.networks[1]`) points at.
fn named<'a>(names: &'a [String], field: &str) -> &'a str {
    field
        .rsplit_once('[')
        .and_then(|(_, i)| i.trim_end_matches(']').parse::<usize>().ok())
        .and_then(|i| names.get(i))
        .map_or("", String::as_str)
}

fn check_monitors(o: &Objects, catalog: &Files<'_>, skip: &BTreeSet<Source>, out: &mut Findings) {
    let abis = AbiCache::default();
    for (src, m) in o.monitors.iter().filter(|(s, _)| !skip.contains(s)) {
        let ns = m.namespace().unwrap_or_default();
        let object = Some(format!("Monitor {ns}/{}", m.name_any()));
        let verdict = admit_monitor(m, catalog, &abis);
        for p in &verdict.problems {
            let field = p.field.clone().unwrap_or_default();
            let (severity, message) = match p.reason.as_str() {
                "NetworkNotFound" => {
                    let n = named(&m.spec.networks, &field);
                    (
                        Severity::Warning,
                        format!(
                            "Network {n} is not among the files: it must exist in the cluster (pass --network-type {n}=evm to compile for it)"
                        ),
                    )
                }
                "TriggerNotFound" => {
                    // no Trigger of the namespace among the files: they live elsewhere (a warning);
                    // some are: this reference names none of them (an error, likely a typo)
                    let found = catalog.trigger_names(&ns);
                    let t = named(&m.spec.triggers, &field);
                    if found.is_empty() {
                        (
                            Severity::Warning,
                            format!(
                                "Trigger {t} is not among the files (no Trigger of namespace {ns} is): it must exist in the cluster"
                            ),
                        )
                    } else {
                        (
                            Severity::Error,
                            format!(
                                "Trigger {t} is not among the Triggers of namespace {ns} in the files ({}): fix the name or add the Trigger",
                                found.join(", ")
                            ),
                        )
                    }
                }
                r if tenant_problem(r) => {
                    if o.tenants.is_empty() {
                        continue;
                    }
                    (Severity::Warning, p.message.clone())
                }
                _ => (Severity::Error, format!("{} ({})", p.message, p.reason)),
            };
            out.add(src, object.clone(), p.field.clone(), severity, message);
        }
        for w in &verdict.warnings {
            out.add(src, object.clone(), None, Severity::Warning, w.to_string());
        }
    }
}

fn check_tenants(o: &Objects, catalog: &Files<'_>, out: &mut Findings) {
    for (src, t) in &o.tenants {
        let verdict = admit_tenant(t, catalog);
        for ((ns, _), message) in verdict.conflicts.iter().zip(verdict.conflict_messages()) {
            let i = t.spec.namespaces.iter().position(|n| n == ns).unwrap_or_default();
            out.add(
                src,
                Some(format!("Tenant {}", t.name_any())),
                Some(format!("spec.namespaces[{i}]")),
                Severity::Error,
                message,
            );
        }
    }
}

/// Runs the command: prints the findings and returns the exit code (0 ok, 1 problems).
pub fn run(args: CheckArgs) -> i32 {
    let Report { findings, verdicts } = check(&args);
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"findings": findings, "errors": errors, "warnings": warnings, "verdicts": verdicts})
            )
            .unwrap_or_default()
        ),
        Format::Human => {
            for f in &findings {
                println!("{f}");
            }
            let files = manifests::files(&args.paths, args.recursive).map(|f| f.len()).unwrap_or(0);
            println!("{errors} error(s), {warnings} warning(s) in {files} file(s)");
        }
    }
    i32::from(errors > 0 || (args.strict && warnings > 0))
}

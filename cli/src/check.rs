//! `chainwatch check`: offline validation of CR YAML — the CRD schema and CEL rules as the API
//! server applies them, then what the operator checks (the same monitor compiler, network
//! settings, trigger secrets), and the references between the files. Problems name the file, the
//! object, the field and the fix; the exit status says whether there were errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chainwatch_core::monitor::{AbiCache, MonitorKey, MonitorSource, compile};
use chainwatch_crds::ChainType;
use kube::ResourceExt;
use serde::Serialize;

use crate::manifests::{self, Objects, Source};

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

/// Checks the files; returns every finding (sorted by file).
pub fn check(args: &CheckArgs) -> Vec<Finding> {
    let mut out = Findings(Vec::new());
    let (docs, load_errors) = manifests::load(&args.paths, args.recursive);
    if docs.is_empty() && load_errors.is_empty() {
        // checking nothing must not pass a CI pipeline
        out.0.push(Finding {
            file: args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            object: None,
            field: None,
            severity: Severity::Error,
            message: manifests::nothing_found(&args.paths, args.recursive),
        });
    }
    for e in load_errors {
        out.0.push(Finding {
            file: e.file.display().to_string(),
            object: None,
            field: None,
            severity: Severity::Error,
            message: e.message,
        });
    }

    // 1. the schema and CEL rules, as the API server applies them
    let mut schema_failed = BTreeSet::new();
    for d in &docs {
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
    let (objects, unparsed) = Objects::from_docs(&docs, &args.namespace);
    for (d, e) in unparsed {
        if !schema_failed.contains(&d.source) {
            out.add(&d.source, Some(d.describe()), None, Severity::Error, e);
        }
    }

    // 2. duplicates
    let mut seen: BTreeMap<String, Source> = BTreeMap::new();
    for d in &docs {
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

    check_networks(&objects, &schema_failed, &mut out);
    check_triggers(&objects, &schema_failed, &mut out);
    check_monitors(&objects, &args.network_types, &schema_failed, &mut out);
    check_tenants(&objects, &mut out);

    let mut findings = out.0;
    findings.sort();
    findings.dedup();
    findings
}

fn check_networks(o: &Objects, skip: &BTreeSet<Source>, out: &mut Findings) {
    for (src, n) in o.networks.iter().filter(|(s, _)| !skip.contains(s)) {
        let lookup = |_: &chainwatch_crds::SecretKeyRef| Ok("https://secret.invalid".to_string());
        if let Err(e) = chainwatch_ingester::config::runtime(&n.name_any(), &n.spec, &lookup) {
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

fn check_triggers(o: &Objects, skip: &BTreeSet<Source>, out: &mut Findings) {
    for (src, t) in o.triggers.iter().filter(|(s, _)| !skip.contains(s)) {
        let ns = t.namespace().unwrap_or_default();
        let object = Some(format!("Trigger {ns}/{}", t.name_any()));
        for r in t.spec.secret_refs() {
            if o.secret_value(&ns, &r.name, &r.key).is_none() {
                let present = o
                    .secrets
                    .iter()
                    .any(|(_, s)| s.namespace().as_deref() == Some(ns.as_str()) && s.name_any() == r.name);
                let msg = if present {
                    format!("Secret {ns}/{} has no key {}", r.name, r.key)
                } else {
                    format!(
                        "Secret {ns}/{} is not among the files: make sure it exists in the cluster with key {}",
                        r.name, r.key
                    )
                };
                out.add(
                    src,
                    object.clone(),
                    None,
                    if present { Severity::Error } else { Severity::Warning },
                    msg,
                );
            }
        }
        let value = |r: &chainwatch_crds::SecretKeyRef| o.secret_value(&ns, &r.name, &r.key);
        for p in chainwatch_core::trigger_checks::check(&t.spec, &value) {
            let (field, message) = p
                .message
                .split_once(": ")
                .map_or((None, p.message.clone()), |(f, m)| (Some(f.to_string()), m.to_string()));
            out.add(src, object.clone(), field, Severity::Error, message);
        }
        if let Some(script) = &t.spec.script {
            let cms = |r: &chainwatch_crds::ConfigMapKeyRef| o.config_map_value(&ns, &r.name, &r.key);
            if let Err(e) = chainwatch_core::monitor::compile::resolve_script(script, "spec.script", &cms) {
                out.add(src, object.clone(), Some(e.field), Severity::Error, e.message);
            }
        }
    }
}

fn check_monitors(o: &Objects, assumed: &[(String, ChainType)], skip: &BTreeSet<Source>, out: &mut Findings) {
    let mut chains = o.chain_types();
    chains.extend(assumed.iter().cloned());
    let abis = AbiCache::default();
    for (src, m) in o.monitors.iter().filter(|(s, _)| !skip.contains(s)) {
        let ns = m.namespace().unwrap_or_default();
        let object = Some(format!("Monitor {ns}/{}", m.name_any()));
        let mut kinds = BTreeSet::new();
        for (i, n) in m.spec.networks.iter().enumerate() {
            match chains.get(n) {
                Some(c) => {
                    kinds.insert(*c);
                }
                None => out.add(src, object.clone(), Some(format!("spec.networks[{i}]")), Severity::Warning, format!(
                    "Network {n} is not among the files: it must exist in the cluster (pass --network-type {n}=evm to compile for it)"
                )),
            }
        }
        let in_files: BTreeSet<String> = o
            .triggers
            .iter()
            .filter(|(_, t)| t.namespace().as_deref() == Some(ns.as_str()))
            .map(|(_, t)| t.name_any())
            .collect();
        if !o.triggers.is_empty() {
            for (i, t) in m.spec.triggers.iter().enumerate() {
                if !in_files.contains(t) {
                    out.add(
                        src,
                        object.clone(),
                        Some(format!("spec.triggers[{i}]")),
                        Severity::Warning,
                        format!(
                            "Trigger {t} is not among the files in namespace {ns} (found: {})",
                            if in_files.is_empty() {
                                "none".to_string()
                            } else {
                                in_files.iter().cloned().collect::<Vec<_>>().join(", ")
                            }
                        ),
                    );
                }
            }
        }
        let cms = |r: &chainwatch_crds::ConfigMapKeyRef| o.config_map_value(&ns, &r.name, &r.key);
        let source = MonitorSource {
            key: MonitorKey::new(&ns, m.name_any()),
            generation: None,
            spec: &m.spec,
            config_maps: &cms,
        };
        for chain in kinds {
            match compile(&source, chain, &abis) {
                Ok(c) => {
                    for w in &c.warnings {
                        out.add(src, object.clone(), None, Severity::Warning, w.to_string());
                    }
                }
                Err(errors) => {
                    for e in errors {
                        out.add(
                            src,
                            object.clone(),
                            Some(e.field.clone()),
                            Severity::Error,
                            format!("{} ({})", e.message, e.reason),
                        );
                    }
                }
            }
        }
    }
}

fn check_tenants(o: &Objects, out: &mut Findings) {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (src, t) in &o.tenants {
        for (i, ns) in t.spec.namespaces.iter().enumerate() {
            let name = t.metadata.name.as_deref().unwrap_or_default();
            match owner.get(ns.as_str()) {
                Some(other) => out.add(
                    src,
                    Some(format!("Tenant {name}")),
                    Some(format!("spec.namespaces[{i}]")),
                    Severity::Error,
                    format!(
                        "namespace {ns} is also claimed by tenant {other}: a namespace belongs to one tenant"
                    ),
                ),
                None => {
                    owner.insert(ns, name);
                }
            }
        }
    }
}

/// Runs the command: prints the findings and returns the exit code (0 ok, 1 problems).
pub fn run(args: CheckArgs) -> i32 {
    let findings = check(&args);
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"findings": findings, "errors": errors, "warnings": warnings})
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

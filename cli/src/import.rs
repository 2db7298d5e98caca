//! `chainwatch import`: an OpenZeppelin Monitor config directory (networks/, monitors/,
//! triggers/, and the scripts they name) → Network, Monitor and Trigger manifests, with Secrets
//! for every credential (never inlined in a spec) and ConfigMaps for large ABIs and scripts. Every
//! upstream field is carried over or reported with its file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chainwatch_crds::{ConfigMapKeyRef, ConfigMapSource, Monitor, Network, ScriptSpec, Trigger};
use chainwatch_upstream::{
    ImportedMonitor, NeededSecret, SecretSource, kube_name, monitor_from_upstream, network_from_upstream,
    trigger_from_upstream,
};
use serde_json::{Value, json};

/// ABIs larger than this (as JSON) go to a ConfigMap.
const ABI_INLINE_LIMIT: usize = 16 * 1024;
/// Scripts larger than this go to a ConfigMap.
const SCRIPT_INLINE_LIMIT: usize = 2 * 1024;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The OpenZeppelin Monitor config directory (the one holding networks/, monitors/, triggers/).
    pub dir: PathBuf,
    /// Namespace of the Monitors, Triggers and their Secrets and ConfigMaps.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Namespace of the Secrets holding RPC URLs (the operator's).
    #[arg(long, default_value = "chainwatch-system")]
    pub operator_namespace: String,
    /// Write one file per object group under this directory instead of printing to stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write the manifests and exit 0 even when `chainwatch check` would refuse some of them (the
    /// findings are printed either way).
    #[arg(long)]
    pub allow_invalid: bool,
}

/// A problem or a note, with the upstream file and field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub file: String,
    pub field: String,
    pub message: String,
    pub error: bool,
}

/// The import: manifest groups by output file name, and notes.
#[derive(Debug, Default)]
pub struct Imported {
    pub files: BTreeMap<String, Vec<Value>>,
    pub notes: Vec<Note>,
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn secret_manifest(
    name: &str,
    namespace: &str,
    needed: &[NeededSecret],
    file: &str,
    notes: &mut Vec<Note>,
) -> Value {
    let mut data = serde_json::Map::new();
    for s in needed {
        let value = match &s.source {
            SecretSource::Plain(v) => v.clone(),
            SecretSource::Environment(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(_) => {
                    notes.push(Note { file: file.into(), field: s.field.clone(), message: format!("environment variable {var} is not set here: fill in key {} of Secret {namespace}/{name}", s.key), error: false });
                    String::new()
                }
            },
            SecretSource::Vault(secret) => {
                notes.push(Note { file: file.into(), field: s.field.clone(), message: format!("HashiCorp Cloud Vault secret {secret} cannot be read by the importer: fill in key {} of Secret {namespace}/{name} (or sync it with your secrets operator)", s.key), error: false });
                String::new()
            }
        };
        data.insert(s.key.clone(), Value::String(value));
    }
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "chainwatch"}}, "type": "Opaque", "stringData": data})
}

fn config_map(name: &str, namespace: &str, key: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "chainwatch"}}, "data": {key: value}})
}

/// Finds a script named by an upstream config: paths are relative to where upstream runs (the
/// directory holding `config/`), to the config directory, or absolute.
fn find_script(dir: &Path, path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let stripped = path.trim_start_matches("./");
    let candidates = [
        p.to_path_buf(),
        dir.join(stripped),
        dir.parent().map(|d| d.join(stripped)).unwrap_or_default(),
        dir.join(stripped.trim_start_matches("config/")),
    ];
    candidates.into_iter().find(|c| c.is_file())
}

fn script_into(spec: &mut ScriptSpec, text: String, cm_name: &str, namespace: &str, group: &mut Vec<Value>) {
    if text.len() > SCRIPT_INLINE_LIMIT {
        group.push(config_map(cm_name, namespace, "script", &text));
        spec.source = None;
        spec.source_from = Some(ConfigMapSource {
            config_map_key_ref: ConfigMapKeyRef { name: cm_name.into(), key: "script".into() },
        });
    } else {
        spec.source = Some(text);
    }
}

fn annotate(mut v: Value, source: &str, display_name: &str) -> Value {
    v["metadata"]["annotations"] =
        json!({"chainwatch.io/imported-from": source, "chainwatch.io/upstream-name": display_name});
    v
}

fn to_value<T: serde::Serialize>(x: &T) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(x).expect("manifests serialize");
    strip(&mut v);
    v
}

/// Converts the directory.
pub fn import(args: &ImportArgs) -> anyhow::Result<Imported> {
    let dir = &args.dir;
    if !dir.join("monitors").is_dir() && !dir.join("networks").is_dir() && !dir.join("triggers").is_dir() {
        anyhow::bail!(
            "{} has none of networks/, monitors/, triggers/: point at OpenZeppelin Monitor's config directory",
            dir.display()
        );
    }
    let ns = &args.namespace;
    let mut out = Imported::default();
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();

    for path in json_files(&dir.join("networks")) {
        let file = rel(&path);
        let v = read_json(&path)?;
        let secret_name = format!("{}-rpc", kube_name(v["slug"].as_str().unwrap_or("network")));
        match network_from_upstream(&v, &secret_name) {
            Err(e) => out.notes.push(Note { file, field: e.field, message: e.message, error: true }),
            Ok(n) => {
                let mut group = Vec::new();
                if !n.secrets.is_empty() {
                    group.push(secret_manifest(
                        &secret_name,
                        &args.operator_namespace,
                        &n.secrets,
                        &file,
                        &mut out.notes,
                    ));
                }
                group.push(annotate(
                    to_value(&Network::new(&n.name, n.spec.clone())),
                    &file,
                    &n.display_name,
                ));
                out.notes.extend(n.unsupported.iter().map(|(f, m)| Note {
                    file: file.clone(),
                    field: f.clone(),
                    message: m.clone(),
                    error: false,
                }));
                out.files.insert(format!("networks/{}.yaml", n.name), group);
            }
        }
    }

    for path in json_files(&dir.join("triggers")) {
        let file = rel(&path);
        let v = read_json(&path)?;
        for (id, entry) in v.as_object().into_iter().flatten() {
            let name = kube_name(id);
            let secret_name = format!("{name}-credentials");
            match trigger_from_upstream(id, entry, &secret_name) {
                Err(e) => out.notes.push(Note {
                    file: file.clone(),
                    field: format!("{id}.{}", e.field),
                    message: e.message,
                    error: true,
                }),
                Ok(t) => {
                    let mut group = Vec::new();
                    if !t.secrets.is_empty() {
                        group.push(secret_manifest(&secret_name, ns, &t.secrets, &file, &mut out.notes));
                    }
                    let mut spec = t.spec.clone();
                    if let (Some(script), Some(sp)) = (spec.script.as_mut(), &t.script_path) {
                        match find_script(dir, sp) {
                            Some(p) => script_into(
                                script,
                                std::fs::read_to_string(&p)?,
                                &format!("{name}-script"),
                                ns,
                                &mut group,
                            ),
                            None => out.notes.push(Note {
                                file: file.clone(),
                                field: format!("{id}.config.script_path"),
                                message: format!(
                                    "script {sp} not found (looked next to and inside {})",
                                    dir.display()
                                ),
                                error: true,
                            }),
                        }
                    }
                    let mut tr = Trigger::new(&name, spec);
                    tr.metadata.namespace = Some(ns.clone());
                    group.push(annotate(to_value(&tr), &file, &t.display_name));
                    out.notes.extend(t.unsupported.iter().map(|(f, m)| Note {
                        file: file.clone(),
                        field: format!("{id}.{f}"),
                        message: m.clone(),
                        error: false,
                    }));
                    out.files.insert(format!("triggers/{name}.yaml"), group);
                }
            }
        }
    }

    for path in json_files(&dir.join("monitors")) {
        let file = rel(&path);
        let v = read_json(&path)?;
        match monitor_from_upstream(&v) {
            Err(e) => out.notes.push(Note { file, field: e.field, message: e.message, error: true }),
            Ok(m) => {
                let (group, name) = monitor_group(&m, dir, ns, &file, &mut out.notes)?;
                out.files.insert(format!("monitors/{name}.yaml"), group);
            }
        }
    }
    out.notes.sort();
    Ok(out)
}

fn monitor_group(
    m: &ImportedMonitor,
    dir: &Path,
    ns: &str,
    file: &str,
    notes: &mut Vec<Note>,
) -> anyhow::Result<(Vec<Value>, String)> {
    let name = kube_name(&m.name);
    let mut spec = m.spec.clone();
    let mut group = Vec::new();
    spec.networks = spec.networks.iter().map(|n| kube_name(n)).collect();
    spec.triggers = spec.triggers.iter().map(|t| kube_name(t)).collect();
    for (i, a) in spec.addresses.iter_mut().enumerate() {
        if let Some(abi) = &a.contract_spec {
            let text = serde_json::to_string_pretty(abi)?;
            if text.len() > ABI_INLINE_LIMIT {
                let cm = format!("{name}-abi-{i}");
                group.push(config_map(&cm, ns, "abi.json", &text));
                a.contract_spec = None;
                a.contract_spec_from = Some(ConfigMapSource {
                    config_map_key_ref: ConfigMapKeyRef { name: cm, key: "abi.json".into() },
                });
            }
        }
    }
    for (i, (script, path)) in spec.trigger_conditions.iter_mut().zip(&m.script_paths).enumerate() {
        match find_script(dir, path) {
            Some(p) => script_into(
                script,
                std::fs::read_to_string(&p)?,
                &format!("{name}-condition-{i}"),
                ns,
                &mut group,
            ),
            None => notes.push(Note {
                file: file.into(),
                field: format!("trigger_conditions[{i}].script_path"),
                message: format!("script {path} not found (looked next to and inside {})", dir.display()),
                error: true,
            }),
        }
    }
    let mut mon = Monitor::new(&name, spec);
    mon.metadata.namespace = Some(ns.into());
    group.push(annotate(to_value(&mon), file, &m.name));
    notes.extend(m.unsupported.iter().map(|(f, msg)| Note {
        file: file.into(),
        field: f.clone(),
        message: msg.clone(),
        error: false,
    }));
    Ok((group, name))
}

fn yaml_stream(header: &str, docs: &[Value]) -> String {
    let mut s = format!("# {header}\n");
    for d in docs {
        s.push_str("---\n");
        s.push_str(&crate::yaml::to_string(d));
    }
    s
}

/// What `chainwatch check` says of the imported manifests, as if they were read from the files
/// they are written to (Secrets left empty for the user to fill are not errors there either).
pub fn findings(imported: &Imported, namespace: &str) -> Vec<crate::check::Finding> {
    let docs: Vec<crate::manifests::Doc> = imported
        .files
        .iter()
        .flat_map(|(file, docs)| {
            docs.iter().enumerate().map(move |(i, value)| crate::manifests::Doc {
                source: crate::manifests::Source { file: file.into(), doc: i + 1 },
                value: value.clone(),
            })
        })
        .collect();
    crate::check::check_docs(&docs, namespace, &[]).findings
}

/// The command: writes or prints the manifests, reports notes on stderr; exit code 1 if a file or
/// field could not be converted.
pub fn run(args: ImportArgs) -> anyhow::Result<i32> {
    let imported = import(&args)?;
    let header = format!(
        "Imported by `chainwatch import` from OpenZeppelin Monitor config {}. Review, then `chainwatch check` and `kubectl apply`.",
        args.dir.display()
    );
    match &args.output {
        Some(out) => {
            for (name, docs) in &imported.files {
                let path = out.join(name);
                std::fs::create_dir_all(path.parent().unwrap_or(out))?;
                std::fs::write(&path, yaml_stream(&header, docs))?;
            }
            eprintln!(
                "wrote {} files under {}: check them with `chainwatch check -R {}`",
                imported.files.len(),
                out.display(),
                out.display()
            );
        }
        None => {
            let all: Vec<Value> = imported.files.values().flatten().cloned().collect();
            print!("{}", yaml_stream(&header, &all));
        }
    }
    for n in &imported.notes {
        eprintln!("{}: {}: {}: {}", if n.error { "error" } else { "note" }, n.file, n.field, n.message);
    }
    let errors = imported.notes.iter().filter(|n| n.error).count();
    let checked = findings(&imported, &args.namespace);
    for f in &checked {
        eprintln!("check: {f}");
    }
    let refused = checked.iter().filter(|f| f.severity == crate::check::Severity::Error).count();
    eprintln!(
        "{} object groups, {errors} error(s), {} note(s); `chainwatch check` on them: {refused} error(s), {} warning(s)",
        imported.files.len(),
        imported.notes.len() - errors,
        checked.len() - refused
    );
    if refused > 0 && !args.allow_invalid {
        eprintln!(
            "the manifests were written, but {refused} would be refused: fix them (or pass --allow-invalid to import them anyway)"
        );
    }
    Ok(i32::from(errors > 0 || (refused > 0 && !args.allow_invalid)))
}

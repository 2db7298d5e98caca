//! Reading CR YAML from files and directories: the documents with where each came from, then the
//! typed objects. Shared by `check`, `test` and `dev`.

use std::path::{Path, PathBuf};

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use std::sync::Arc;

use chainwatch_core::config::{Catalog, Lookup, ObjectSet, Peer, Quota};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based position of the document in its file.
    pub doc: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.doc > 1 {
            write!(f, "{} (document {})", self.file.display(), self.doc)
        } else {
            write!(f, "{}", self.file.display())
        }
    }
}

/// A document of a manifest file.
#[derive(Clone, Debug)]
pub struct Doc {
    pub source: Source,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    /// `Kind namespace/name` or `Kind name`.
    pub fn describe(&self) -> String {
        let name = self.value["metadata"]["name"].as_str().unwrap_or("<no name>");
        match self.value["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    pub file: PathBuf,
    pub message: String,
}

fn is_manifest(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("kustomization."))
}

/// What to say when `paths` hold no manifest: reading nothing must not look like success.
pub fn nothing_found(paths: &[PathBuf], recursive: bool) -> String {
    let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let nested = !recursive
        && paths
            .iter()
            .any(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir()))));
    if nested {
        format!("no manifests found in {shown}; it has subdirectories: add -R to read them")
    } else {
        format!("no manifests found in {shown}: point at YAML files or directories that hold them")
    }
}

/// The manifest files under `paths`: files as given; the files of directories (sorted; with
/// `recursive`, of their subdirectories too, like `kubectl apply -R`), skipping hidden entries and
/// kustomizations.
pub fn files(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, LoadError> {
    fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| LoadError { file: dir.into(), message: e.to_string() })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if recursive {
                    walk(&p, recursive, out)?;
                }
            } else if is_manifest(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, recursive, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(LoadError { file: p.clone(), message: "no such file or directory".into() });
        }
    }
    Ok(out)
}

/// The documents of one file (YAML, possibly several; JSON is YAML too).
pub fn read_file(path: &Path) -> Result<Vec<Doc>, LoadError> {
    use serde::Deserialize;
    let text =
        std::fs::read_to_string(path).map_err(|e| LoadError { file: path.into(), message: e.to_string() })?;
    let mut docs = Vec::new();
    for (i, d) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(d)
            .map_err(|e| LoadError { file: path.into(), message: format!("not valid YAML: {e}") })?;
        if value.is_null() {
            continue;
        }
        let value: Value = serde_json::to_value(value)
            .map_err(|e| LoadError { file: path.into(), message: format!("document {}: {e}", i + 1) })?;
        if value.get("kind").and_then(Value::as_str).is_none() {
            return Err(LoadError { file: path.into(), message: format!("document {} has no kind", i + 1) });
        }
        docs.push(Doc { source: Source { file: path.into(), doc: i + 1 }, value });
    }
    Ok(docs)
}

/// Every document under `paths`; unreadable files are returned as errors, the rest still read.
pub fn load(paths: &[PathBuf], recursive: bool) -> (Vec<Doc>, Vec<LoadError>) {
    let (mut docs, mut errors) = (Vec::new(), Vec::new());
    match files(paths, recursive) {
        Err(e) => errors.push(e),
        Ok(files) => {
            for f in files {
                match read_file(&f) {
                    Ok(d) => docs.extend(d),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    (docs, errors)
}

/// The typed objects of a set of documents, each with its source.
#[derive(Default, Clone)]
pub struct Objects {
    pub networks: Vec<(Source, Network)>,
    pub monitors: Vec<(Source, Monitor)>,
    pub triggers: Vec<(Source, Trigger)>,
    pub tenants: Vec<(Source, Tenant)>,
    pub secrets: Vec<(Source, Secret)>,
    pub config_maps: Vec<(Source, ConfigMap)>,
    /// Documents of other kinds (Namespaces, …), not used.
    pub other: Vec<Doc>,
}

fn typed<T: DeserializeOwned>(doc: &Doc) -> Result<T, String> {
    serde_json::from_value(doc.value.clone()).map_err(|e| e.to_string())
}

impl Objects {
    /// Sorts documents into typed objects. Namespaced objects without a namespace get
    /// `default_namespace` (as kubectl does). Returns the documents that do not parse.
    pub fn from_docs(docs: &[Doc], default_namespace: &str) -> (Objects, Vec<(Doc, String)>) {
        let mut o = Objects::default();
        let mut bad = Vec::new();
        for d in docs {
            let mut d = d.clone();
            let namespaced = matches!(d.kind(), "Monitor" | "Trigger" | "Secret" | "ConfigMap");
            if namespaced
                && d.value["metadata"]["namespace"].is_null()
                && let Some(m) = d.value.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.insert("namespace".into(), default_namespace.into());
            }
            let source = d.source.clone();
            let result = match d.kind() {
                "Network" => typed(&d).map(|x| o.networks.push((source, x))),
                "Monitor" => typed(&d).map(|x| o.monitors.push((source, x))),
                "Trigger" => typed(&d).map(|x| o.triggers.push((source, x))),
                "Tenant" => typed(&d).map(|x| o.tenants.push((source, x))),
                "Secret" => {
                    typed::<Secret>(&d).map(|x| o.secrets.push((source, with_string_data(x, &d.value))))
                }
                "ConfigMap" => typed(&d).map(|x| o.config_maps.push((source, x))),
                _ => {
                    o.other.push(d.clone());
                    Ok(())
                }
            };
            if let Err(e) = result {
                bad.push((d, e));
            }
        }
        (o, bad)
    }

    /// The objects as a set (what the worker's store and [`Files`] hold).
    pub fn object_set(&self) -> ObjectSet {
        let mut o = ObjectSet::default();
        self.networks.iter().for_each(|(_, x)| o.insert_network(x.clone()));
        self.tenants.iter().for_each(|(_, x)| o.insert_tenant(x.clone()));
        self.monitors.iter().for_each(|(_, x)| o.insert_monitor(x.clone()));
        self.triggers.iter().for_each(|(_, x)| o.insert_trigger(x.clone()));
        self.secrets.iter().for_each(|(_, x)| o.insert_secret(x.clone()));
        self.config_maps.iter().for_each(|(_, x)| o.insert_config_map(x.clone()));
        o
    }

    /// A Secret of any namespace by name (endpoint Secrets live in the operator's namespace in a
    /// cluster; among files any namespace will do), decoded by the one rule.
    pub fn any_secret_value(&self, r: &chainwatch_crds::SecretKeyRef) -> Option<String> {
        let set = self.object_set();
        self.secrets
            .iter()
            .find(|(_, s)| s.name_any() == r.name)
            .and_then(|(_, s)| set.secret_value(&s.namespace().unwrap_or_default(), r).ok())
    }
}

/// Merges `stringData` into `data`, as the API server does on write.
fn with_string_data(mut s: Secret, raw: &Value) -> Secret {
    if let Some(sd) = raw.get("stringData").and_then(Value::as_object) {
        let data = s.data.get_or_insert_with(Default::default);
        for (k, v) in sd {
            data.insert(
                k.clone(),
                k8s_openapi::ByteString(v.as_str().unwrap_or_default().as_bytes().to_vec()),
            );
        }
    }
    s.string_data = None;
    s
}

/// The manifest files as admission sees them: what is among the files, and a Secret that is not
/// among them may still exist in the cluster (unknown, not missing).
pub struct Files<'a>(pub &'a ObjectSet);

impl Catalog for Files<'_> {
    fn network(&self, name: &str) -> Option<Arc<Network>> {
        self.0.network(name)
    }
    fn network_names(&self) -> Vec<String> {
        self.0.network_names()
    }
    fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.0.tenants()
    }
    fn trigger_names(&self, namespace: &str) -> Vec<String> {
        self.0.trigger_names(namespace)
    }
    fn peers(&self, quota: Quota, namespaces: &[String]) -> Vec<Peer> {
        self.0.peers(quota, namespaces)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Lookup<Arc<ConfigMap>> {
        self.0.config_map(namespace, name)
    }
    fn secret(&self, namespace: &str, name: &str) -> Lookup<Arc<Secret>> {
        match self.0.secret(namespace, name) {
            Lookup::Missing => {
                Lookup::Unknown("is not among the files: make sure it exists in the cluster".into())
            }
            other => other,
        }
    }
}

//! The committed CRD YAML matches the Rust types, and every example parses into its type.

use std::path::{Path, PathBuf};

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};

fn repo() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = repo().join("config/crd");
    let mut stale = Vec::new();
    for (name, want) in chainwatch_crds::generated_files() {
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if have != want {
            stale.push(name);
        }
    }
    let expected: Vec<String> = chainwatch_crds::generated_files().into_iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            stale.push(format!("{name} (not generated any more)"));
        }
    }
    assert!(
        stale.is_empty(),
        "config/crd is out of date ({}): run `just generate` and commit the result",
        stale.join(", ")
    );
}

/// Every YAML document of a file, with its kind.
fn documents(path: &Path) -> Vec<(String, serde_yaml::Value)> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value =
                serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without kind", path.display()));
            (kind.to_string(), value)
        })
        .collect()
}

use serde::Deserialize;

fn parse_as(kind: &str, value: serde_yaml::Value, path: &Path) {
    fn typed<T: serde::de::DeserializeOwned>(value: serde_yaml::Value, path: &Path) {
        if let Err(e) = serde_yaml::from_value::<T>(value) {
            panic!("{}: does not parse as {}: {e}", path.display(), std::any::type_name::<T>());
        }
    }
    match kind {
        "Tenant" => typed::<Tenant>(value, path),
        "Network" => typed::<Network>(value, path),
        "Monitor" => typed::<Monitor>(value, path),
        "Trigger" => typed::<Trigger>(value, path),
        "Secret" => typed::<Secret>(value, path),
        "ConfigMap" => typed::<ConfigMap>(value, path),
        "Namespace" => typed::<Namespace>(value, path),
        other => panic!("{}: unexpected kind {other} in examples", path.display()),
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_parses_into_its_type() {
    let files = yaml_files(&repo().join("examples"));
    assert!(files.len() >= 8, "examples are missing");
    let mut kinds = std::collections::BTreeSet::new();
    for path in files {
        for (kind, value) in documents(&path) {
            parse_as(&kind, value, &path);
            kinds.insert(kind);
        }
    }
    for kind in ["Tenant", "Network", "Monitor", "Trigger", "Secret"] {
        assert!(kinds.contains(kind), "no {kind} among the examples");
    }
}

#[test]
fn examples_cover_every_trigger_kind_and_both_chains() {
    let mut channels = std::collections::BTreeSet::new();
    let mut chains = std::collections::BTreeSet::new();
    for path in yaml_files(&repo().join("examples")) {
        for (kind, value) in documents(&path) {
            match kind.as_str() {
                "Trigger" => {
                    let t: Trigger = serde_yaml::from_value(value).unwrap();
                    channels.insert(t.spec.channel().expect("a trigger with a kind"));
                }
                "Network" => {
                    let n: Network = serde_yaml::from_value(value).unwrap();
                    chains.insert(n.spec.chain_type.as_str());
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        channels.into_iter().collect::<Vec<_>>(),
        ["discord", "email", "script", "slack", "telegram", "webhook"]
    );
    assert_eq!(chains.into_iter().collect::<Vec<_>>(), ["evm", "stellar"]);
}

#[test]
fn every_invalid_example_names_the_message_the_api_server_gives() {
    let files = yaml_files(&repo().join("examples/invalid"));
    assert!(files.len() >= 20, "invalid examples are missing");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# expect: ") && first.len() > 12,
            "{}: first line must be `# expect: <message>`",
            path.display()
        );
        // still well-formed YAML with a known kind: the API server, not the parser, rejects it
        for (kind, _) in documents(&path) {
            assert!(
                ["Tenant", "Network", "Monitor", "Trigger"].contains(&kind.as_str()),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn offline_validation_agrees_with_the_api_server() {
    // valid examples pass
    for path in yaml_files(&repo().join("examples")) {
        for (kind, value) in documents(&path) {
            let json = serde_json::to_value(&value).unwrap();
            if let Some(v) = chainwatch_crds::validate::validate(&json) {
                assert!(v.is_empty(), "{}: {kind}: {v:?}", path.display());
            }
        }
    }
    // invalid ones fail with the message the API server gives (checked there in operator/tests)
    for path in yaml_files(&repo().join("examples/invalid")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text.lines().next().unwrap().trim_start_matches("# expect: ").trim();
        for (_, value) in documents(&path) {
            let json = serde_json::to_value(&value).unwrap();
            let v = chainwatch_crds::validate::validate(&json).unwrap();
            assert!(
                v.iter().any(|x| x.to_string().contains(expect)),
                "{}: want `{expect}`, got {v:?}",
                path.display()
            );
        }
    }
}

//! One model of admission: the same objects through the operator (against the API server), the
//! worker's store and `chainwatch check` get the same verdicts — the examples, and the cases the
//! copies used to disagree on: two Tenants claiming one namespace (the oldest owns it, whatever
//! the order), a Secret value with a trailing newline (admitted and used the same), scripts
//! allowed by the newer claimant only, bad expressions and dangling references.

use std::collections::BTreeMap;
use std::time::Duration;

use chainwatch_core::config::ObjectSet;
use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_devkit::testbed::unique;
use chainwatch_worker::config::{Admission, ConfigStore};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::harness::{self, Operator, condition, eventually};

/// `Kind ns/name` → (Ready, reason), as the operator wrote it, once every object is settled.
async fn operator_verdicts(client: &Client, expected: usize) -> BTreeMap<String, (bool, String)> {
    eventually("every object admitted or rejected at its generation", Duration::from_secs(60), || async {
        let mut out = BTreeMap::new();
        let settled = |v: &Value| {
            v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && v["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| c["type"] == "Ready" && c["reason"] != "ReferencePending")
                })
        };
        macro_rules! collect {
            ($kind:ty, $label:literal) => {
                for o in Api::<$kind>::all(client.clone()).list(&ListParams::default()).await.ok()?.items {
                    let v = serde_json::to_value(&o).ok()?;
                    if !settled(&v) {
                        return None;
                    }
                    let (status, reason, _) = condition(&o, "Ready")?;
                    let id = match o.namespace() {
                        Some(ns) => format!("{} {ns}/{}", $label, o.name_any()),
                        None => format!("{} {}", $label, o.name_any()),
                    };
                    out.insert(id, (status == "True", reason));
                }
            };
        }
        collect!(Monitor, "Monitor");
        collect!(Trigger, "Trigger");
        collect!(Tenant, "Tenant");
        (out.len() == expected).then_some(out)
    })
    .await
}

/// What is on the API server, as the worker's store holds it (creation times included).
async fn read_back(client: &Client, namespaces: &[&str]) -> ObjectSet {
    let mut o = ObjectSet::default();
    let lp = ListParams::default();
    Api::<Network>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .for_each(|x| o.insert_network(x));
    Api::<Tenant>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .for_each(|x| o.insert_tenant(x));
    Api::<Monitor>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .for_each(|x| o.insert_monitor(x));
    Api::<Trigger>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .for_each(|x| o.insert_trigger(x));
    for ns in namespaces {
        Api::<Secret>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .for_each(|x| o.insert_secret(x));
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .for_each(|x| o.insert_config_map(x));
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_worker_and_check_agree_on_every_verdict() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&op_ns, "op-a", &["--no-kafka"]).await;
    let ns = unique("claimed");
    let net = unique("eth");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(harness::repo().join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let hmac = base64("hmac-key\n");
    let abi = r#"[{type: event, name: Transfer, anonymous: false, inputs: [{indexed: true, name: from, type: address}, {indexed: true, name: to, type: address}, {indexed: false, name: value, type: uint256}]}]"#;
    let monitor = |name: &str, extra: &str| {
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Monitor\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  networks: [{net}]\n  addresses: [{{address: \"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48\", contractSpec: {abi}}}]\n  triggers: [hook]\n{extra}"
        )
    };
    let docs = [
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Network\nmetadata: {{name: {net}}}\nspec: {{type: evm, rpc: [{{url: \"http://127.0.0.1:1\"}}]}}"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: hmac, namespace: {ns}}}\ndata: {{key: \"{hmac}\"}}"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: chat, namespace: {ns}}}\ndata: {{other: \"{}\"}}",
            base64("x")
        ),
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Trigger\nmetadata: {{name: hook, namespace: {ns}}}\nspec: {{webhook: {{url: \"https://hooks.example/x\", secretRef: {{name: hmac, key: key}}}}, message: {{title: t, body: b}}}}"
        ),
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Trigger\nmetadata: {{name: chat, namespace: {ns}}}\nspec: {{slack: {{webhookUrlSecretRef: {{name: chat, key: url}}}}, message: {{title: t, body: b}}}}"
        ),
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Trigger\nmetadata: {{name: run, namespace: {ns}}}\nspec: {{script: {{language: Bash, source: \"echo hi\"}}}}"
        ),
        monitor(
            "good",
            "  matchConditions: {events: [{signature: \"Transfer(address,address,uint256)\", expression: \"value > 1\"}]}\n",
        ),
        monitor(
            "bad-expr",
            "  matchConditions: {events: [{signature: \"Transfer(address,address,uint256)\", expression: \"value >> 1\"}]}\n",
        ),
        monitor(
            "bad-param",
            "  matchConditions: {events: [{signature: \"Transfer(address,address,uint256)\", expression: \"amount > 1\"}]}\n",
        ),
        monitor("scripted", "  triggerConditions: [{language: Bash, source: \"echo false\"}]\n"),
        monitor("lost", "").replace(&format!("networks: [{net}]"), "networks: [polygon-nowhere]"),
        monitor("orphan", "").replace("triggers: [hook]", "triggers: [pager]"),
    ];
    std::fs::write(dir.path().join("90-claimed.yaml"), docs.join("\n---\n")).unwrap();
    // two claims on one namespace: the older (also first by name, so files without creation times
    // agree) disallows scripts, the newer allows them
    let tenant = |name: &str, scripts: bool| {
        format!(
            "apiVersion: chainwatch.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec: {{namespaces: [{ns}], limits: {{allowScripts: {scripts}}}}}\n"
        )
    };
    let (first, second) = (format!("{ns}-a-first"), format!("{ns}-z-second"));
    std::fs::write(dir.path().join("91-tenant-first.yaml"), tenant(&first, false)).unwrap();
    std::fs::write(dir.path().join("92-tenant-second.yaml"), tenant(&second, true)).unwrap();

    harness::namespace(&client, &ns).await;
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut expected = 0;
    for f in &files {
        if f.file_name().unwrap() == "92-tenant-second.yaml" {
            // creation times have one-second resolution
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        for doc in harness::documents(&std::fs::read_to_string(f).unwrap()) {
            expected += usize::from(matches!(doc["kind"].as_str(), Some("Monitor" | "Trigger" | "Tenant")));
            harness::apply_value(&client, &doc).await.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }

    // the operator
    let operator = operator_verdicts(&client, expected).await;

    // chainwatch check, over the same files
    let out = std::process::Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!(
        "CARGO_BIN_EXE_chainwatch"
    )))
    .args(["check", dir.path().to_str().unwrap(), "--output", "json"])
    .output()
    .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check: BTreeMap<String, (bool, String)> = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["object"].as_str().unwrap().to_string(),
                (v["ready"].as_bool().unwrap(), v["reason"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    assert_eq!(check, operator, "chainwatch check and the operator disagree");

    // the worker's store, running its own admission over what the API server holds
    let store = ConfigStore::new(Admission::Local);
    store.replace_all(read_back(&client, &["acme", &ns]).await);
    store.rebuild_now();
    let snap = store.current();
    for (object, (ready, reason)) in operator.iter().filter(|(o, _)| o.starts_with("Monitor ")) {
        let (mns, mname) = object.trim_start_matches("Monitor ").split_once('/').unwrap();
        let rejected =
            snap.rejected.iter().find(|(k, _)| k.namespace == mns && k.name == mname).map(|(_, why)| why);
        match rejected {
            None => assert!(*ready, "{object}: the worker evaluates it, the operator says {reason}"),
            Some(why) => {
                assert!(!*ready, "{object}: the worker leaves it out ({why}), the operator admits it");
                assert!(why.starts_with(&format!("{reason}:")), "{object}: worker {why}, operator {reason}");
            }
        }
    }
    assert_eq!(
        snap.tenant_of(&ns).map(|t| t.name.as_str()),
        Some(first.as_str()),
        "the oldest claim owns it"
    );
    let hook = &snap.triggers[&(ns.clone(), "hook".to_string())];
    let r = chainwatch_crds::SecretKeyRef { name: "hmac".into(), key: "key".into() };
    assert_eq!(hook.secret(&r).ok(), Some("hmac-key"), "delivery signs with the value admission checked");

    // and what they agree on is right
    let at = |o: &str| operator[o].clone();
    assert_eq!(at(&format!("Trigger {ns}/hook")), (true, "Ready".into()));
    assert_eq!(at(&format!("Trigger {ns}/chat")), (false, "SecretKeyNotFound".into()));
    assert_eq!(at(&format!("Trigger {ns}/run")), (false, "ScriptsNotAllowed".into()));
    assert_eq!(at(&format!("Monitor {ns}/good")), (true, "Admitted".into()));
    assert_eq!(at(&format!("Monitor {ns}/scripted")), (false, "ScriptsNotAllowed".into()));
    assert_eq!(at(&format!("Monitor {ns}/bad-expr")), (false, "ExpressionSyntaxError".into()));
    assert_eq!(at(&format!("Monitor {ns}/bad-param")), (false, "ExpressionTypeError".into()));
    assert_eq!(at(&format!("Monitor {ns}/lost")), (false, "NetworkNotFound".into()));
    assert_eq!(at(&format!("Monitor {ns}/orphan")), (false, "TriggerNotFound".into()));
    assert_eq!(at(&format!("Tenant {second}")), (false, "NamespaceConflict".into()));
    assert_eq!(at(&format!("Tenant {first}")), (true, "Ready".into()));
    op.stop().await;
    harness::reset(&client).await;
}

fn base64(s: &str) -> String {
    // how a Secret's `data` holds bytes
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

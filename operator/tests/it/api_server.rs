//! The CRDs on a real API server: every valid example applies (server-side) and reads back as
//! written, every invalid example is rejected with the message in its `# expect:` header, and
//! `kubectl get` columns come back in the Table response.

use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;

use crate::harness::{self, apply_value, create_value, documents, repo};

/// Every field the user wrote is stored as written (the server may add defaults).
fn assert_contains(written: &serde_json::Value, stored: &serde_json::Value, path: &str) {
    match (written, stored) {
        (serde_json::Value::Object(w), serde_json::Value::Object(s)) => {
            for (k, v) in w {
                let got = s.get(k).unwrap_or_else(|| panic!("{path}.{k}: written but not stored"));
                assert_contains(v, got, &format!("{path}.{k}"));
            }
        }
        (serde_json::Value::Array(w), serde_json::Value::Array(s)) => {
            assert_eq!(w.len(), s.len(), "{path}: length");
            for (i, (a, b)) in w.iter().zip(s).enumerate() {
                assert_contains(a, b, &format!("{path}[{i}]"));
            }
        }
        (w, s) => assert_eq!(w, s, "{path}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_examples_apply_and_read_back() {
    let client = harness::clean_slate().await;
    let mut files: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut applied = 0;
    for path in &files {
        for doc in documents(&std::fs::read_to_string(path).unwrap()) {
            let stored = apply_value(&client, &doc).await.unwrap_or_else(|e| {
                panic!("{}: {} {} rejected: {e}", path.display(), doc["kind"], doc["metadata"]["name"])
            });
            let stored = serde_json::to_value(&stored).unwrap();
            for field in ["spec", "data", "stringData"] {
                if let Some(w) = doc.get(field) {
                    if field == "stringData" {
                        continue; // stored as data
                    }
                    assert_contains(w, &stored[field], &format!("{}: {}", path.display(), field));
                }
            }
            applied += 1;
        }
    }
    assert!(applied >= 15, "only {applied} example objects");
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_examples_are_rejected_with_their_message() {
    let client = harness::client().await;
    harness::install_crds(&client).await;
    harness::namespace(&client, "acme").await;
    let mut checked = 0;
    let mut files: Vec<_> = std::fs::read_dir(repo().join("examples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut wrong = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` first line", path.display()))
            .trim()
            .to_string();
        for doc in documents(&text) {
            match create_value(&client, &doc).await {
                Ok(_) => wrong.push(format!("{}: accepted", path.display())),
                Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(&expect) => checked += 1,
                Err(e) => wrong.push(format!("{}: rejected with `{e}`, expected `{expect}`", path.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked, files.len());
}

/// Default columns of `kubectl get <plural>` and the rows' cells in them (a Table response).
async fn columns(
    client: &kube::Client,
    plural: &str,
    namespace: Option<&str>,
) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
    let path = match namespace {
        Some(ns) => format!("/apis/chainwatch.io/v1alpha1/namespaces/{ns}/{plural}"),
        None => format!("/apis/chainwatch.io/v1alpha1/{plural}"),
    };
    let req = http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(req).await.expect("a Table response");
    assert_eq!(table["kind"], "Table", "{table}");
    // the default columns (priority 0); `-o wide` adds the others
    let defs = table["columnDefinitions"].as_array().unwrap();
    let shown: Vec<usize> =
        (0..defs.len()).filter(|&i| defs[i]["priority"].as_i64().unwrap_or(0) == 0).collect();
    let names = shown.iter().map(|&i| defs[i]["name"].as_str().unwrap().to_string()).collect();
    let rows = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| shown.iter().map(|&i| r["cells"][i].clone()).collect())
        .collect();
    (names, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_the_printer_columns() {
    let client = harness::clean_slate().await;
    for f in [
        "00-namespace-acme.yaml",
        "01-tenant-acme.yaml",
        "10-network-ethereum-mainnet.yaml",
        "30-triggers-acme.yaml",
        "40-monitor-usdc-large-transfer.yaml",
    ] {
        harness::apply_file(&client, &repo().join("examples").join(f)).await;
    }
    // a status as the ingester writes it, to see HEAD / LAST BLOCK / LAG filled
    let gvk = GroupVersionKind::gvk("chainwatch.io", "v1alpha1", "Network");
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    let networks: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let status = serde_json::json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "status": {"head": 21000000, "lastBlock": 20999988, "lag": 12}});
    networks
        .patch_status(
            "ethereum-mainnet",
            &kube::api::PatchParams::apply("chainwatch-ingester").force(),
            &kube::api::Patch::Apply(&status),
        )
        .await
        .unwrap();

    let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (monitors, rows) = columns(&client, "monitors", Some("acme")).await;
    assert_eq!(monitors, want(&["Name", "Tenant", "Networks", "Paused", "Ready", "Last Match", "Age"]));
    assert_eq!(rows[0][0], "usdc-large-transfer");
    let (networks_cols, rows) = columns(&client, "networks", None).await;
    assert_eq!(networks_cols, want(&["Name", "Type", "Head", "Last Block", "Lag", "Ready", "Age"]));
    let eth = rows.iter().find(|r| r[0] == "ethereum-mainnet").expect("ethereum-mainnet listed");
    assert_eq!(
        (&eth[1], &eth[2], &eth[3], &eth[4]),
        (
            &serde_json::json!("evm"),
            &serde_json::json!(21000000),
            &serde_json::json!(20999988),
            &serde_json::json!(12)
        )
    );
    let (triggers, rows) = columns(&client, "triggers", Some("acme")).await;
    assert_eq!(triggers, want(&["Name", "Channel", "Ready", "Failures", "Pending", "Last Delivery", "Age"]));
    assert_eq!(rows.len(), 7);
    let (tenants, _) = columns(&client, "tenants", None).await;
    assert_eq!(tenants, want(&["Name", "Namespaces", "Monitors", "Triggers", "Ready", "Age"]));
    harness::reset(&client).await;
}

//! The Argo CD health checks shipped in `config/argocd`, run under a real Lua 5.4 (as Argo CD runs
//! them, with the object as the global `obj`) against objects the operator wrote in the API server:
//! healthy, progressing, degraded and suspended, for each of the four kinds.

use std::io::Write;
use std::time::Duration;

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_devkit::testbed::unique;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::{self, Operator, condition, eventually, get, repo};

const T: Duration = Duration::from_secs(30);

/// A JSON value as a Lua expression (null: nil, arrays: sequences).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter().map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// What `config/argocd/<kind>.lua` says of `obj`: (status, message).
fn health(kind: &str, obj: &impl serde::Serialize) -> (String, String) {
    let script = std::fs::read_to_string(repo().join(format!("config/argocd/{kind}.lua"))).unwrap();
    let obj = serde_json::to_value(obj).unwrap();
    let program = format!(
        "obj = {}\nlocal function check()\n{script}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(&obj)
    );
    let mut child = std::process::Command::new("lua5.4")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lua5.4 (scripts/testbed.sh installs it)");
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{kind}.lua failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn assert_health(kind: &str, obj: &impl serde::Serialize, status: &str, message_has: &str) {
    let (got, message) = health(kind, obj);
    assert_eq!(got, status, "{kind}: {message}");
    assert!(message.contains(message_has), "{kind} {status}: {message:?} lacks {message_has:?}");
}

/// The object as a newer generation the operator has not seen.
fn next_generation(obj: &impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(obj).unwrap();
    let g = v["metadata"]["generation"].as_i64().unwrap();
    v["metadata"]["generation"] = json!(g + 1);
    v
}

async fn apply(client: &kube::Client, v: Value) {
    harness::apply_value(client, &v).await.unwrap_or_else(|e| panic!("applying {v}: {e}"));
}

/// Waits for the object's Ready condition to have `reason` at its current generation.
async fn ready_with<K>(api: &Api<K>, name: &str, reason: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(&format!("{name}: Ready reason {reason}"), T, || async {
        let o = get(api, name).await;
        let v = serde_json::to_value(&o).unwrap();
        let current = v["status"]["observedGeneration"] == v["metadata"]["generation"];
        condition(&o, "Ready").filter(|c| c.1 == reason && current).map(|_| o)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_health_checks_read_what_the_operator_writes() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-argo").await;
    let ns = harness::new_namespace(&client, "argo-tenant").await;
    let op = Operator::start(&op_ns, "op-argo", &[]).await;

    // Tenants: Healthy; Degraded when another Tenant already owns its namespace
    let (owner, rival) = (unique("owner"), unique("rival"));
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": owner}, "spec": {"namespaces": [ns]}})).await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    let t = ready_with(&tenants, &owner, "Ready").await;
    assert_health("tenant", &t, "Healthy", "namespaces");
    assert_health("tenant", &next_generation(&t), "Progressing", "has not seen generation");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the owner is the older one
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": rival}, "spec": {"namespaces": [ns]}})).await;
    assert_health(
        "tenant",
        &ready_with(&tenants, &rival, "NamespaceConflict").await,
        "Degraded",
        "NamespaceConflict: ",
    );

    // Networks: Progressing until the ingester reports, Healthy once it does; Degraded when its
    // spec is wrong
    let (net, bad) = (unique("eth"), unique("bad"));
    apply(
        &client,
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "chainId": 1, "rpc": [{"url": "https://rpc.example"}]}}),
    )
    .await;
    apply(
        &client,
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": bad},
        "spec": {"type": "evm", "chainId": 1, "rpc": [{"url": "ws://rpc.example"}]}}),
    )
    .await;
    let networks: Api<Network> = Api::all(client.clone());
    let waiting = ready_with(&networks, &net, "WaitingForIngester").await;
    assert_health("network", &waiting, "Progressing", "has not reported progress");
    let unsupported = eventually("the Network with a websocket endpoint not Ready", T, || async {
        let n = get(&networks, &bad).await;
        condition(&n, "Ready").filter(|c| c.0 == "False").map(|_| n)
    })
    .await;
    let reason = condition(&unsupported, "Ready").unwrap().1;
    assert_health("network", &unsupported, "Degraded", &format!("{reason}: "));
    assert_health("network", &unsupported, "Degraded", "http(s)");
    let progress = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "status": {"conditions": [
        {"type": "Progressing", "status": "True", "reason": "Ingesting", "message": "at block 21000000", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    networks
        .patch_status(&net, &PatchParams::apply("chainwatch-ingester").force(), &Patch::Apply(&progress))
        .await
        .unwrap();
    let running = ready_with(&networks, &net, "Running").await;
    assert_health("network", &running, "Healthy", "ingesting into");
    assert_health("network", &next_generation(&running), "Progressing", "has not seen generation");

    // Triggers: Healthy; Degraded when its Secret is missing, or when deliveries fail
    let webhook = |name: &str, secret: Option<&str>| {
        let mut w = json!({"url": "https://hooks.example/x"});
        if let Some(s) = secret {
            w["secretRef"] = json!({"name": s, "key": "key"});
        }
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name, "namespace": ns},
            "spec": {"webhook": w, "message": {"title": "t", "body": "b"}}})
    };
    apply(&client, webhook("hook", None)).await;
    apply(&client, webhook("unsigned", Some("missing"))).await;
    let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
    let hook = ready_with(&triggers, "hook", "Ready").await;
    assert_health("trigger", &hook, "Healthy", "");
    let missing = eventually("the Trigger without its Secret", T, || async {
        let t = get(&triggers, "unsigned").await;
        condition(&t, "Ready").filter(|c| c.0 == "False").map(|_| t)
    })
    .await;
    assert_health("trigger", &missing, "Degraded", "missing");
    // as the workers write it when a receiver keeps failing
    let failing = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "status": {"conditions": [
        {"type": "Delivering", "status": "False", "reason": "DeliveryFailed", "message": "dead-lettered after 5 attempts: HTTP 500", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    triggers
        .patch_status("hook", &PatchParams::apply("chainwatch-worker").force(), &Patch::Apply(&failing))
        .await
        .unwrap();
    // and the operator's Ready says it too (kstatus: Stalled)
    let hook = ready_with(&triggers, "hook", "DeliveryFailed").await;
    assert_eq!(condition(&hook, "Stalled").map(|c| c.0), Some("True".into()));
    assert_health("trigger", &hook, "Degraded", "DeliveryFailed: dead-lettered");
    let recovered = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "status": {"conditions": [
        {"type": "Delivering", "status": "True", "reason": "Delivered", "message": "the newest notification was delivered", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}});
    triggers
        .patch_status("hook", &PatchParams::apply("chainwatch-worker").force(), &Patch::Apply(&recovered))
        .await
        .unwrap();
    assert_health("trigger", &ready_with(&triggers, "hook", "Ready").await, "Healthy", "");

    // Monitors: Healthy, Suspended when paused, Degraded when a Trigger is missing, Progressing
    // before admission
    let monitor = |name: &str, triggers: &[&str], paused: bool| {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": name, "namespace": ns}, "spec": {
            "networks": [net], "paused": paused, "triggers": triggers,
            "addresses": [{"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "contractSpec": [
                {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                    {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
                    {"indexed": false, "name": "value", "type": "uint256"}]}]}],
            "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)"}]}}})
    };
    apply(&client, monitor("ok", &["hook"], false)).await;
    apply(&client, monitor("paused", &["hook"], true)).await;
    apply(&client, monitor("orphan", &["nope"], false)).await;
    let monitors: Api<Monitor> = Api::namespaced(client.clone(), &ns);
    let ok = eventually("the Monitor admitted", T, || async {
        let m = get(&monitors, "ok").await;
        condition(&m, "Ready").filter(|c| c.0 == "True").map(|_| m)
    })
    .await;
    assert_health("monitor", &ok, "Healthy", "");
    assert_health("monitor", &next_generation(&ok), "Progressing", "has not seen generation");
    assert_health("monitor", &ready_with(&monitors, "paused", "Paused").await, "Suspended", "paused");
    let orphan = eventually("the Monitor without its Trigger", T, || async {
        let m = get(&monitors, "orphan").await;
        condition(&m, "Ready").filter(|c| c.0 == "False").map(|_| m)
    })
    .await;
    assert_health("monitor", &orphan, "Degraded", "nope");
    let mut fresh = serde_json::to_value(&ok).unwrap();
    fresh["status"] = Value::Null;
    assert_health("monitor", &fresh, "Progressing", "waiting for admission");

    // the same verdicts, counted: ok (Admitted) and paused are Ready, orphan is not
    for (ready, at_least) in [("true", 2.0), ("false", 1.0)] {
        let sample = format!("chainwatch_operator_objects{{kind=\"Monitor\",ready=\"{ready}\"}}");
        eventually(&format!("{sample} >= {at_least}"), T, || async {
            let n = op.metric(&sample).await;
            (n >= at_least).then_some(())
        })
        .await;
    }
    op.stop().await;
    harness::reset(&client).await;
}

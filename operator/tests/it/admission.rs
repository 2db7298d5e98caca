//! Monitor and Trigger admission against kube-testenv: each kind of problem shows `Ready=False`
//! with its reason and a message naming the field; fixing it (or creating what was missing) flips
//! the object to `Ready=True` without touching it.

use std::time::Duration;

use chainwatch_crds::{Monitor, Tenant, Trigger};
use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use crate::harness::{self, Operator, condition, eventually, get};

const T: Duration = Duration::from_secs(30);

/// Creates a monitor a bit more than a second after the previous one: quota ranks by creation
/// time, which has one-second resolution.
async fn create_monitor(client: &Client, v: serde_json::Value) {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(client, v).await;
}

async fn apply(client: &Client, v: serde_json::Value) {
    harness::apply_value(client, &v).await.unwrap_or_else(|e| panic!("applying {v}: {e}"));
}

fn monitor(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn webhook(ns: &str, name: &str) -> serde_json::Value {
    json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name, "namespace": ns},
        "spec": {"webhook": {"url": "https://hooks.example/x"}, "message": {"title": "t", "body": "b"}}})
}

fn transfer_monitor(network: &str, expression: &str, triggers: &[&str]) -> serde_json::Value {
    json!({
        "networks": [network],
        "addresses": [{"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "contractSpec": [
            {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
                {"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"},
                {"indexed": false, "name": "value", "type": "uint256"}]}]}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": expression}]},
        "triggers": triggers,
    })
}

/// Waits for the monitor's Ready condition to have `reason`; returns (status, message).
async fn ready_with(client: &Client, ns: &str, name: &str, reason: &str) -> (String, String) {
    condition_with(client, ns, name, "Ready", reason).await
}

/// Waits for a condition of the monitor to have `reason` at the current generation.
async fn condition_with(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
) -> (String, String) {
    let api: Api<Monitor> = Api::namespaced(client.clone(), ns);
    eventually(&format!("Monitor {name} {type_} reason {reason}"), T, || async {
        let m = get(&api, name).await;
        let c = condition(&m, type_)?;
        let current = m.status.as_ref()?.observed_generation == m.metadata.generation;
        (c.1 == reason && current).then_some((c.0, c.2))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_monitors_say_why_and_recover_when_fixed() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let ns = harness::new_namespace(&client, "tenant").await;
    let op = Operator::start(&op_ns, "op-a", &["--no-kafka"]).await;
    let net = unique("eth");
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns], "limits": {"maxMonitors": 3}}})).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net}, "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}]}})).await;
    apply(&client, webhook(&ns, "hook")).await;

    // a good one
    create_monitor(&client, monitor(&ns, "good", transfer_monitor(&net, "value > 10000000000", &["hook"])))
        .await;
    let (status, message) = ready_with(&client, &ns, "good", "Admitted").await;
    assert_eq!(status, "True");
    assert!(message.contains(&net), "{message}");
    let m: Monitor = get(&Api::namespaced(client.clone(), &ns), "good").await;
    assert_eq!(m.status.as_ref().unwrap().tenant.as_deref(), Some(ns.as_str()), "TENANT column");
    for t in ["Compiled", "ReferencesResolved", "WithinQuota"] {
        assert_eq!(condition(&m, t).unwrap().0, "True", "{t}");
    }

    // bad expression
    create_monitor(&client, monitor(&ns, "bad-expr", transfer_monitor(&net, "value >> 1", &["hook"]))).await;
    let (status, message) = ready_with(&client, &ns, "bad-expr", "ExpressionSyntaxError").await;
    assert_eq!(status, "False");
    assert!(message.starts_with("spec.matchConditions.events[0].expression:"), "{message}");
    // unknown parameter
    create_monitor(&client, monitor(&ns, "bad-param", transfer_monitor(&net, "amount > 1", &["hook"]))).await;
    let (_, message) = ready_with(&client, &ns, "bad-param", "ExpressionTypeError").await;
    assert!(
        message.contains("unknown parameter `amount`") && message.contains("value"),
        "names the parameter and what exists: {message}"
    );
    // unknown network
    create_monitor(
        &client,
        monitor(&ns, "bad-net", transfer_monitor("polygon-mainnet", "value > 1", &["hook"])),
    )
    .await;
    let (_, message) = ready_with(&client, &ns, "bad-net", "NetworkNotFound").await;
    assert!(message.contains("spec.networks[0]: Network polygon-mainnet does not exist"), "{message}");
    // missing trigger
    create_monitor(&client, monitor(&ns, "bad-trigger", transfer_monitor(&net, "value > 1", &["pager"])))
        .await;
    let (_, message) = ready_with(&client, &ns, "bad-trigger", "TriggerNotFound").await;
    assert!(message.contains("spec.triggers[0]: Trigger pager does not exist"), "{message}");
    assert!(message.contains("(existing: hook)"), "{message}");
    // a Trigger it does not name (a typo) still refreshes the names the message offers
    apply(&client, webhook(&ns, "pagr")).await;
    // (well before the 30 s requeue of an over-quota monitor, which would refresh it anyway)
    eventually("the message lists the new Trigger", Duration::from_secs(10), || async {
        let m: Monitor = get(&Api::namespaced(client.clone(), &ns), "bad-trigger").await;
        condition(&m, "Ready").filter(|c| c.2.contains("(existing: hook, pagr)")).map(|_| ())
    })
    .await;
    Api::<chainwatch_crds::Trigger>::namespaced(client.clone(), &ns)
        .delete("pagr", &DeleteParams::default())
        .await
        .unwrap();
    // over quota: six monitors, three allowed; the oldest win (Ready shows the first problem,
    // reference problems before quota)
    create_monitor(&client, monitor(&ns, "sixth", transfer_monitor(&net, "value > 1", &["hook"]))).await;
    let (_, message) = ready_with(&client, &ns, "sixth", "OverQuota").await;
    assert!(message.contains("maxMonitors") && message.contains("monitor number 6"), "{message}");
    assert_eq!(condition_with(&client, &ns, "bad-trigger", "WithinQuota", "OverQuota").await.0, "False");
    assert_eq!(condition_with(&client, &ns, "bad-param", "WithinQuota", "WithinQuota").await.0, "True");
    // a warning event says so
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = eventually("a Warning event for bad-expr", T, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some("bad-expr") && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    assert_eq!(warned.reason.as_deref(), Some("ExpressionSyntaxError"));

    // fixes: the expression, the network appears, the trigger appears, quota frees up
    apply(&client, monitor(&ns, "bad-expr", transfer_monitor(&net, "value >> 1 || value > 1", &["hook"])))
        .await;
    ready_with(&client, &ns, "bad-expr", "ExpressionSyntaxError").await;
    apply(&client, monitor(&ns, "bad-expr", transfer_monitor(&net, "value > 1", &["hook"]))).await;
    assert_eq!(ready_with(&client, &ns, "bad-expr", "Admitted").await.0, "True");
    apply(&client, monitor(&ns, "bad-param", transfer_monitor(&net, "value > 1", &["hook"]))).await;
    assert_eq!(ready_with(&client, &ns, "bad-param", "Admitted").await.0, "True");
    // now over quota: good, bad-expr, bad-param are admitted; bad-net, bad-trigger, sixth are not
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "polygon-mainnet"}, "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}]}})).await;
    ready_with(&client, &ns, "bad-net", "OverQuota").await;
    // a deletion frees a slot: the oldest waiting monitor is admitted at once
    let monitors: Api<Monitor> = Api::namespaced(client.clone(), &ns);
    monitors.delete("good", &DeleteParams::default()).await.unwrap();
    assert_eq!(ready_with(&client, &ns, "bad-net", "Admitted").await.0, "True");
    condition_with(&client, &ns, "bad-trigger", "WithinQuota", "OverQuota").await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns], "limits": {"maxMonitors": 10}}})).await;
    ready_with(&client, &ns, "bad-trigger", "TriggerNotFound").await;
    apply(&client, webhook(&ns, "pager")).await;
    assert_eq!(ready_with(&client, &ns, "bad-trigger", "Admitted").await.0, "True");
    assert_eq!(ready_with(&client, &ns, "sixth", "Admitted").await.0, "True");

    // the tenant counts them
    let tenant = eventually("tenant counts", T, || async {
        let t: Tenant = get(&Api::all(client.clone()), &ns).await;
        (t.status.as_ref()?.ready_monitors == Some(5)).then_some(t)
    })
    .await;
    assert_eq!(
        (tenant.status.as_ref().unwrap().monitors, tenant.status.as_ref().unwrap().triggers),
        (Some(5), Some(2))
    );
    eventually("the admitted gauge", T, || async {
        (op.metric("chainwatch_operator_monitors_admitted").await == 5.0).then_some(())
    })
    .await;
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_report_missing_secrets_and_script_permission() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let ns = harness::new_namespace(&client, "tenant").await;
    let op = Operator::start(&op_ns, "op-a", &["--no-kafka"]).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns]}})).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "slack", "namespace": ns},
        "spec": {"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}, "message": {"title": "t", "body": "b"}}})).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "script", "namespace": ns},
        "spec": {"script": {"language": "Bash", "source": "echo hi"}}})).await;
    let triggers: Api<Trigger> = Api::namespaced(client.clone(), &ns);
    let ready = |name: &'static str, reason: &'static str| {
        let triggers = triggers.clone();
        async move {
            eventually(&format!("Trigger {name} {reason}"), T, || async {
                condition(&get(&triggers, name).await, "Ready").filter(|c| c.1 == reason)
            })
            .await
        }
    };
    let (_, _, message) = ready("slack", "SecretNotFound").await;
    assert!(
        message.contains("Secret") && message.contains("slack") && message.contains("key url"),
        "{message}"
    );
    let (_, _, message) = ready("script", "ScriptsNotAllowed").await;
    assert!(message.contains("allowScripts"), "{message}");

    // a Secret that is not a URL, then one that is
    apply(&client, harness::secret(&ns, "slack", "url", "not a url")).await;
    let (_, _, message) = ready("slack", "InvalidURL").await;
    assert!(message.starts_with("spec.slack.webhookUrlSecretRef"), "{message}");
    apply(&client, harness::secret(&ns, "slack", "url", "https://hooks.slack.com/services/A/B/C")).await;
    let (status, _, _) = ready("slack", "Ready").await;
    assert_eq!(status, "True");
    let t = get(&triggers, "slack").await;
    assert_eq!(t.status.unwrap().channel.as_deref(), Some("slack"), "CHANNEL column");
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns], "limits": {"allowScripts": true}}})).await;
    assert_eq!(ready("script", "Ready").await.0, "True");
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_do_not_readmit() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let ns = harness::new_namespace(&client, "tenant").await;
    let op = Operator::start(&op_ns, "op-a", &["--no-kafka"]).await;
    let net = unique("eth");
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns]}})).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net}, "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}]}})).await;
    apply(&client, webhook(&ns, "hook")).await;
    for name in ["watched", "sentinel"] {
        apply(&client, monitor(&ns, name, transfer_monitor(&net, "value > 1", &["hook"]))).await;
        ready_with(&client, &ns, name, "Admitted").await;
    }
    let reconciles =
        || async { op.metric("chainwatch_operator_reconciles_total{controller=\"monitor\"}").await };
    let before = reconciles().await;

    // what an ingester and a worker write all day long
    let pp = kube::api::PatchParams::apply("status-writer").force();
    for i in 0..20 {
        let s = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "status": {"head": 100 + i, "lastBlock": 90 + i, "lag": 10}});
        Api::<chainwatch_crds::Network>::all(client.clone())
            .patch_status(&net, &pp, &kube::api::Patch::Apply(&s))
            .await
            .unwrap();
        let t = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "status": {"deliveredCount": i}});
        Api::<Trigger>::namespaced(client.clone(), &ns)
            .patch_status("hook", &pp, &kube::api::Patch::Apply(&t))
            .await
            .unwrap();
        let m =
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "status": {"matchCount": i}});
        Api::<Monitor>::namespaced(client.clone(), &ns)
            .patch_status("watched", &pp, &kube::api::Patch::Apply(&m))
            .await
            .unwrap();
    }
    // a spec change the operator must see, then a short window for stragglers
    apply(&client, monitor(&ns, "sentinel", transfer_monitor(&net, "value > 2", &["hook"]))).await;
    ready_with(&client, &ns, "sentinel", "Admitted").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let extra = reconciles().await - before;
    assert!(extra <= 2.0, "60 status writes caused {extra} monitor reconciles (want only the sentinel's)");
    op.stop().await;
    harness::reset(&client).await;
}

/// A directory applied in any order: a Monitor whose Trigger comes a second later gets no
/// Warning (its condition says TriggerNotFound meanwhile, and Admitted once it comes); one whose
/// Trigger never comes gets its Warning once the grace is over, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_that_appears_within_the_grace_is_not_a_warning() {
    let client = harness::clean_slate().await;
    let op_ns = harness::new_namespace(&client, "cw-op").await;
    let ns = harness::new_namespace(&client, "tenant").await;
    let op = Operator::start(&op_ns, "op-grace", &["--no-kafka"]).await;
    let net = unique("eth");
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns]}})).await;
    apply(&client, json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net}, "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}]}})).await;
    apply(&client, monitor(&ns, "early", transfer_monitor(&net, "value > 1", &["late"]))).await;
    apply(&client, monitor(&ns, "orphan", transfer_monitor(&net, "value > 1", &["never"]))).await;
    let (_, message) = ready_with(&client, &ns, "early", "TriggerNotFound").await;
    assert!(message.contains("late"), "{message}");
    ready_with(&client, &ns, "orphan", "TriggerNotFound").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(&client, webhook(&ns, "late")).await;
    ready_with(&client, &ns, "early", "Admitted").await;

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = eventually("the Warning for the Monitor whose Trigger never came", T, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some("orphan") && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    assert_eq!(warned.reason.as_deref(), Some("TriggerNotFound"));
    let orphan = get(&Api::<Monitor>::namespaced(client.clone(), &ns), "orphan").await;
    let created = orphan.metadata.creation_timestamp.unwrap().0;
    let at = warned.event_time.map(|t| t.0).or(warned.first_timestamp.map(|t| t.0)).unwrap();
    // creation times have one-second resolution
    assert!(
        at.duration_since(created).as_secs_f64() >= 9.0,
        "the Warning came {:?} after creation, inside the grace",
        at.duration_since(created)
    );
    let list = events.list(&ListParams::default()).await.unwrap();
    let early: Vec<_> = list
        .items
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("early"))
        .map(|e| (e.type_.clone().unwrap_or_default(), e.reason.clone().unwrap_or_default()))
        .collect();
    assert!(early.iter().all(|(t, _)| t == "Normal"), "{early:?}");
    assert!(early.iter().any(|(_, r)| r == "Admitted"), "{early:?}");
    op.stop().await;
    harness::reset(&client).await;
}

//! Admission as tables: each row an object and what it refers to, and the verdict it must get.

use serde_json::{Value, json};

use super::*;
use crate::monitor::AbiCache;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn monitor(name: &str, created: &str, spec: Value) -> chainwatch_crds::Monitor {
    obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor",
        "metadata": {"name": name, "namespace": "acme", "generation": 3, "creationTimestamp": created}, "spec": spec}))
}

fn tenant(name: &str, created: &str, limits: Value) -> chainwatch_crds::Tenant {
    obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "creationTimestamp": created}, "spec": {"namespaces": ["acme"], "limits": limits}}))
}

fn trigger(name: &str, spec: Value) -> chainwatch_crds::Trigger {
    obj(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger",
        "metadata": {"name": name, "namespace": "acme", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}))
}

fn secret(name: &str, key: &str, value: &str) -> k8s_openapi::api::core::v1::Secret {
    obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "acme"},
        "data": {key: base64(value)}}))
}

fn base64(s: &str) -> String {
    // how a Secret's `data` holds bytes
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// One tenant (max 2 monitors), one EVM network, one webhook trigger.
fn world() -> ObjectSet {
    let mut o = ObjectSet::default();
    o.insert_tenant(tenant("acme", "2026-01-01T00:00:00Z", json!({"maxMonitors": 2})));
    o.insert_network(obj(
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": "eth"},
        "spec": {"type": "evm", "rpc": [{"url": "https://rpc.example"}]}}),
    ));
    o.insert_trigger(trigger("slack", json!({"webhook": {"url": "https://hooks.example/x"}})));
    o
}

const ADDRESS: &str = "0x0000000000000000000000000000000000000001";

fn ready(o: &ObjectSet, m: &chainwatch_crds::Monitor) -> (String, bool, String) {
    let v = admit_monitor(m, o, &AbiCache::default());
    (v.ready().reason.clone(), v.admitted, v.ready().message.clone())
}

#[test]
fn each_monitor_problem_names_the_field_and_the_fix() {
    let ok = json!({"networks": ["eth"], "addresses": [{"address": ADDRESS}], "triggers": ["slack"]});
    let rows: Vec<(&str, Value, &str, &str)> = vec![
        ("admitted", ok.clone(), "Admitted", "evaluated on eth"),
        (
            "unknown network",
            json!({"networks": ["ethh"], "triggers": ["slack"]}),
            "NetworkNotFound",
            "spec.networks[0]: Network ethh does not exist (existing: eth); create it or fix the name",
        ),
        (
            "missing trigger",
            json!({"networks": ["eth"], "triggers": ["slak"]}),
            "TriggerNotFound",
            "spec.triggers[0]: Trigger slak does not exist in namespace acme (existing: slack); create it or fix the name",
        ),
        (
            "syntax error",
            json!({"networks": ["eth"], "triggers": ["slack"], "matchConditions": {"transactions": [{"expression": "value >> 1"}]}}),
            "ExpressionSyntaxError",
            "spec.matchConditions.transactions[0].expression: `value >> 1`: syntax error at column 8",
        ),
        (
            "scripts not allowed",
            json!({"networks": ["eth"], "triggers": ["slack"], "triggerConditions": [{"language": "Bash", "source": "echo false"}]}),
            "ScriptsNotAllowed",
            "spec.triggerConditions: tenant acme does not allow scripts",
        ),
        (
            "contract spec from a missing ConfigMap",
            json!({"networks": ["eth"], "triggers": ["slack"], "addresses": [{"address": ADDRESS, "contractSpecFrom": {"configMapKeyRef": {"name": "abi", "key": "erc20.json"}}}]}),
            "ConfigMapNotFound",
            "spec.addresses[0].contractSpecFrom: ConfigMap acme/abi does not exist",
        ),
        (
            "paused",
            json!({"networks": ["eth"], "triggers": ["slack"], "paused": true}),
            "Paused",
            "admitted; paused",
        ),
    ];
    let o = world();
    for (what, spec, reason, message) in rows {
        let (r, _, m) = ready(&o, &monitor("m", "2026-01-01T00:00:00Z", spec));
        assert_eq!(r, reason, "{what}: {m}");
        assert!(m.starts_with(message), "{what}: {m}");
    }

    let mut no_tenant = world();
    no_tenant.tenants.clear();
    let (r, admitted, m) = ready(&no_tenant, &monitor("m", "2026-01-01T00:00:00Z", ok.clone()));
    assert_eq!((r.as_str(), admitted), ("NoTenant", false));
    assert!(m.contains("create a Tenant whose spec.namespaces lists acme"), "{m}");
}

#[test]
fn quota_admits_the_oldest_and_the_rest_say_their_rank() {
    let spec = json!({"networks": ["eth"], "addresses": [{"address": ADDRESS}], "triggers": ["slack"]});
    let mut o = world();
    for (name, at) in
        [("c", "2026-01-03T00:00:00Z"), ("a", "2026-01-01T00:00:00Z"), ("b", "2026-01-02T00:00:00Z")]
    {
        o.insert_monitor(monitor(name, at, spec.clone()));
    }
    let verdict = |n: &str| ready(&o, &o.monitors[&("acme".to_string(), n.to_string())].clone());
    assert_eq!(verdict("a").0, "Admitted");
    assert_eq!(verdict("b").0, "Admitted");
    let (reason, _, message) = verdict("c");
    assert_eq!(reason, "OverQuota");
    assert!(message.contains("monitor number 3 by creation time"), "{message}");
}

#[test]
fn a_reference_that_cannot_be_read_yet_is_pending_not_missing() {
    let mut o = world();
    o.unreadable.insert("acme".into(), "cannot be read yet: the namespace is not listed yet".into());
    let m = monitor(
        "m",
        "2026-01-01T00:00:00Z",
        json!({"networks": ["eth"], "triggers": ["slack"],
        "addresses": [{"address": ADDRESS, "contractSpecFrom": {"configMapKeyRef": {"name": "abi", "key": "k"}}}]}),
    );
    let v = admit_monitor(&m, &o, &AbiCache::default());
    assert!(v.unsettled && !v.admitted);
    assert_eq!(v.ready().reason, "ReferencePending");

    o.insert_trigger(trigger("hook", json!({"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}})));
    let t = admit_trigger(&o.triggers[&("acme".into(), "hook".into())].clone(), &o);
    assert!(t.unsettled && !t.ready.ok);
    assert_eq!(t.ready.reason, "ReferencePending");
}

#[test]
fn trigger_secrets_are_decoded_by_the_one_rule() {
    let mut o = world();
    o.insert_trigger(trigger(
        "signed",
        json!({"webhook": {"url": "https://hooks.example/x", "secretRef": {"name": "hmac", "key": "key"}}}),
    ));
    o.insert_secret(secret("hmac", "key", "s3cret\n"));
    let t = admit_trigger(&o.triggers[&("acme".into(), "signed".into())].clone(), &o);
    assert!(t.ready.ok, "{:?}", t.ready);
    let r = chainwatch_crds::SecretKeyRef { name: "hmac".into(), key: "key".into() };
    assert_eq!(
        t.resolved.secret(&r),
        Ok("s3cret"),
        "the value delivery signs with is the one admission checked"
    );
}

#[test]
fn each_trigger_problem_names_the_field_and_the_fix() {
    /// (what, spec, the Secret's key and value, reason, message)
    type Row<'a> = (&'a str, Value, Option<(&'a str, &'a str)>, &'a str, &'a str);
    let rows: Vec<Row> = vec![
        (
            "missing secret",
            json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}),
            None,
            "SecretNotFound",
            "Secret acme/slack does not exist: create it with key url",
        ),
        (
            "missing key",
            json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}),
            Some(("other", "x")),
            "SecretKeyNotFound",
            "Secret acme/slack has no key url",
        ),
        (
            "not a URL",
            json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}),
            Some(("url", "not a url")),
            "InvalidURL",
            "spec.slack.webhookUrlSecretRef: the Secret does not hold an http(s) URL",
        ),
        (
            "script without permission",
            json!({"script": {"language": "Bash", "source": "echo hi"}}),
            None,
            "ScriptsNotAllowed",
            "spec.script: the namespace's tenant does not allow scripts",
        ),
        (
            "ready",
            json!({"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}}),
            Some(("url", "https://hooks.slack.com/services/A/B/C\n")),
            "Ready",
            "slack trigger ready",
        ),
    ];
    for (what, spec, data, reason, message) in rows {
        let mut o = world();
        o.insert_trigger(trigger("t", spec));
        if let Some((k, v)) = data {
            o.insert_secret(secret("slack", k, v));
        }
        let v = admit_trigger(&o.triggers[&("acme".into(), "t".into())].clone(), &o);
        assert_eq!(v.ready.reason, reason, "{what}: {}", v.ready.message);
        assert!(v.ready.message.starts_with(message), "{what}: {}", v.ready.message);
    }
}

#[test]
fn two_tenants_claiming_a_namespace_agree_on_the_oldest() {
    let mut o = world();
    let mut newer =
        tenant("newcomer", "2026-06-01T00:00:00Z", json!({"allowScripts": true, "maxMonitors": 100}));
    newer.metadata.name = Some("newcomer".into());
    o.insert_tenant(newer.clone());
    assert_eq!(o.tenant_of("acme").unwrap().metadata.name.as_deref(), Some("acme"));
    let v = admit_tenant(&newer, &o);
    assert_eq!(v.conflicts, vec![("acme".to_string(), "acme".to_string())]);
    // the newcomer's allowScripts does not apply in acme
    let m = monitor(
        "m",
        "2026-01-01T00:00:00Z",
        json!({"networks": ["eth"], "triggers": ["slack"], "triggerConditions": [{"language": "Bash", "source": "echo false"}]}),
    );
    assert_eq!(ready(&o, &m).0, "ScriptsNotAllowed");
}

//! What keeps a pipeline available and contained, against kube-testenv: the disruption budgets
//! and network policies the operator gives every Network's ingester and workers (read back field
//! by field, and gone with the Network), and the install manifests in `config/` (rendered with
//! `kubectl kustomize`, applied server-side): two operator replicas with a budget and spread, a
//! namespace that denies by default, and every selector selecting the pods it is meant for.

use std::collections::BTreeMap;
use std::time::Duration;

use chainwatch_crds::Network;
use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use crate::harness::{self, Operator, eventually, get};

const T: Duration = Duration::from_secs(30);

fn selector(network: &str, component: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/component": component, "app.kubernetes.io/name": "chainwatch", "chainwatch.io/network": network}})
}

fn tcp(ports: &[u16]) -> Value {
    Value::Array(ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_gets_disruption_budgets_and_network_policies() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-pol").await;
    let op = Operator::start(
        &ns,
        "op-a",
        &["--no-kafka", "--api-server-port=6443", "--allow-destination=10.9.0.0/16,127.0.0.1"],
    )
    .await;
    let net = unique("pol");
    harness::apply_value(
        &client,
        &json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
            "spec": {"type": "evm", "chainId": 1, "rpc": [{"url": "http://10.1.2.3:8545/"}, {"url": "https://node.example/v2/KEY"}]}}),
    )
    .await
    .unwrap();
    let (ingester, worker) = (format!("chainwatch-ingester-{net}"), format!("chainwatch-worker-{net}"));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let netpols: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    eventually("the Network's status (every child applied)", T, || async {
        get(&Api::<Network>::all(client.clone()), &net).await.status.and_then(|s| s.observed_generation)
    })
    .await;

    // one pod at a time through drains; a pod that is not ready never blocks one
    for (name, component) in [(&ingester, "ingester"), (&worker, "worker")] {
        let pdb = get(&pdbs, name).await;
        assert_eq!(pdb.labels()["app.kubernetes.io/component"], component);
        assert_eq!(pdb.labels()["chainwatch.io/network"], net);
        assert_eq!(pdb.owner_references()[0].kind, "Network");
        assert_eq!(
            serde_json::to_value(pdb.spec.unwrap()).unwrap(),
            json!({"maxUnavailable": 1, "selector": selector(&net, component), "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            "{name}"
        );
    }

    // the ingester: DNS, Kafka, the API server, its endpoints' ports; nothing else
    let kafka_port: u16 =
        chainwatch_devkit::testbed::kafka_bootstrap().rsplit_once(':').unwrap().1.parse().unwrap();
    let dns = json!({"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]});
    let admin_in = json!([{"ports": [{"protocol": "TCP", "port": "admin"}]}]);
    let policy = get(&netpols, &ingester).await;
    assert_eq!(policy.owner_references()[0].kind, "Network");
    assert_eq!(
        serde_json::to_value(policy.spec.unwrap()).unwrap(),
        json!({
            "podSelector": selector(&net, "ingester"),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": admin_in,
            "egress": [dns, {"ports": tcp(&[kafka_port])}, {"ports": tcp(&[6443])}, {"ports": tcp(&[443, 8545])}],
        })
    );
    // the workers: the same platform, script runners, the public internet and the allowlist
    let policy = get(&netpols, &worker).await;
    assert_eq!(
        serde_json::to_value(policy.spec.unwrap()).unwrap(),
        json!({
            "podSelector": selector(&net, "worker"),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": admin_in,
            "egress": [
                dns,
                {"ports": tcp(&[kafka_port])},
                {"ports": tcp(&[6443])},
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": "script-runner"}}}], "ports": tcp(&[8080])},
                {"to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]}},
                    {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}},
                ]},
                {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}, {"ipBlock": {"cidr": "127.0.0.1/32"}}]},
            ],
        })
    );
    // workers spread over nodes and zones, never left Pending for it
    let dep: Deployment = get(&Api::namespaced(client.clone(), &ns), &worker).await;
    let spread = dep.spec.unwrap().template.spec.unwrap().topology_spread_constraints.unwrap();
    let spread: Vec<(String, i32, String, Value)> = spread
        .into_iter()
        .map(|c| {
            (
                c.topology_key,
                c.max_skew,
                c.when_unsatisfiable,
                serde_json::to_value(c.label_selector).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        spread,
        [
            ("kubernetes.io/hostname".into(), 1, "ScheduleAnyway".into(), selector(&net, "worker")),
            ("topology.kubernetes.io/zone".into(), 1, "ScheduleAnyway".into(), selector(&net, "worker")),
        ]
    );

    // a policy edited by hand is put back
    let mut edited = get(&netpols, &worker).await;
    edited.spec.as_mut().unwrap().egress = Some(vec![]);
    edited.metadata.managed_fields = None;
    netpols.replace(&worker, &Default::default(), &edited).await.unwrap();
    eventually("the worker policy restored", T, || async {
        let p = get(&netpols, &worker).await;
        (p.spec.unwrap().egress.unwrap_or_default().len() == 6).then_some(())
    })
    .await;

    // gone with the Network
    Api::<Network>::all(client.clone()).delete(&net, &DeleteParams::default()).await.unwrap();
    eventually("budgets and policies deleted with the Network", T, || async {
        let left = pdbs.list(&Default::default()).await.unwrap().items.len()
            + netpols.list(&Default::default()).await.unwrap().items.len();
        (left == 0).then_some(())
    })
    .await;
    op.stop().await;
    harness::reset(&client).await;
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered manifests"))
}

/// Whether `selector.matchLabels` selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"].as_object().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_manifests_run_two_operators_in_a_namespace_that_denies_by_default() {
    let client = harness::clean_slate().await;
    let docs = harness::kustomize("config/default");
    let op = find(&docs, "Deployment", "chainwatch-operator");
    let pods = &op["spec"]["template"]["metadata"]["labels"];
    assert_eq!(op["spec"]["replicas"], 2, "a leader and a hot standby");
    let spread = op["spec"]["template"]["spec"]["topologySpreadConstraints"].as_array().unwrap();
    let keys: Vec<&str> = spread.iter().map(|c| c["topologyKey"].as_str().unwrap()).collect();
    assert_eq!(keys, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    assert!(spread.iter().all(|c| selects(&c["labelSelector"], pods)));

    let pdb = find(&docs, "PodDisruptionBudget", "chainwatch-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "a drain never takes both replicas");
    assert!(selects(&pdb["spec"]["selector"], pods));

    let deny = find(&docs, "NetworkPolicy", "chainwatch-default-deny");
    assert_eq!(deny["spec"], json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
    let allow = find(&docs, "NetworkPolicy", "chainwatch-operator");
    assert!(selects(&allow["spec"]["podSelector"], pods));
    let mut egress_ports: Vec<u64> = allow["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap().iter().map(|p| p["port"].as_u64().unwrap()))
        .collect();
    egress_ports.sort_unstable();
    egress_ports.dedup();
    assert_eq!(egress_ports, [53, 443, 6443, 9092], "DNS, the API server, Kafka");
    let container_ports: BTreeMap<&str, u64> = op["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(allow["spec"]["ingress"][0]["ports"][0]["port"], "admin");
    assert!(container_ports.contains_key("admin"), "the policy's named port exists");

    // all of it applies server-side (the CRDs first, as kubectl does with -k)
    let (crds, rest): (Vec<&Value>, Vec<&Value>) =
        docs.iter().partition(|d| d["kind"] == "CustomResourceDefinition" || d["kind"] == "Namespace");
    for d in crds.into_iter().chain(rest) {
        harness::apply_value(&client, d)
            .await
            .unwrap_or_else(|e| panic!("applying {} {}: {e}", d["kind"], d["metadata"]["name"]));
    }
    let stored: PodDisruptionBudget =
        get(&Api::namespaced(client.clone(), "chainwatch-system"), "chainwatch-operator").await;
    assert_eq!(stored.spec.unwrap().unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
    harness::reset(&client).await;
}

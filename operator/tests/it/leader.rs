//! Two operator replicas: only the Lease holder reconciles and writes; when it stops (SIGTERM drain
//! releases the Lease) the other takes over at once.

use std::time::Duration;

use chainwatch_crds::Network;
use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::{self, Operator, eventually, get};

const T: Duration = Duration::from_secs(30);
const RECONCILES: &str = "chainwatch_operator_reconciles_total{controller=\"network\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_writes() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let a = Operator::start(&ns, "replica-a", &["--no-kafka"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        leases.get_opt("chainwatch-operator").await.unwrap().and_then(|l| l.spec?.holder_identity)
    };
    eventually("replica-a leads", T, || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = Operator::start(&ns, "replica-b", &["--no-kafka"]).await;
    eventually("replica-b serves metrics", T, || async { (!b.metrics().await.is_empty()).then_some(()) })
        .await;

    let net = unique("lead");
    let network = |confirmations: u32| {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}], "confirmations": confirmations}})
    };
    harness::apply_value(&client, &network(1)).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let worker = format!("chainwatch-worker-{net}");
    eventually("children written", T, || async { deployments.get_opt(&worker).await.unwrap() }).await;
    eventually("the Network's status written", T, || async {
        get(&Api::<Network>::all(client.clone()), &net).await.status
    })
    .await;
    assert!(a.metric(RECONCILES).await >= 1.0);
    assert_eq!(a.metric("chainwatch_operator_leader").await, 1.0);
    assert_eq!(b.metric(RECONCILES).await, 0.0, "the standby does not reconcile");
    assert_eq!(b.metric("chainwatch_operator_leader").await, 0.0);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let instances: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert!(!instances.is_empty() && instances.iter().all(|i| i == "replica-a"), "events by {instances:?}");

    // the leader drains: B takes over without waiting for the Lease to expire
    let stopped = std::time::Instant::now();
    a.stop().await;
    eventually("replica-b leads", T, || async {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    harness::apply_value(&client, &network(2)).await.unwrap();
    eventually("replica-b reconciles", T, || async { (b.metric(RECONCILES).await >= 1.0).then_some(()) })
        .await;
    assert_eq!(b.metric("chainwatch_operator_leader").await, 1.0);
    eprintln!("takeover after the leader stopped: {took:?}");
    b.stop().await;
    harness::reset(&client).await;
}

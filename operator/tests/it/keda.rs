//! With KEDA's ScaledObject CRD installed (detected by discovery at start), workers scale on the
//! filter group's consumer lag; without it, on CPU.

use std::time::Duration;

use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::harness::{self, Operator, eventually};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_scaled_object_on_lag_when_keda_is_installed() {
    let client = harness::clean_slate().await;
    harness::install(&client, &[harness::keda_crd()]).await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &[]).await;
    let net = unique("keda");
    let network = |mode: &str| {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}], "kafka": {"partitions": 3},
                 "workers": {"maxReplicas": 10, "autoscaling": {"mode": mode, "lagThreshold": 50}}}})
    };
    harness::apply_value(&client, &network("Auto")).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    );
    let scaled: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let worker = format!("chainwatch-worker-{net}");
    let so = eventually("the ScaledObject", T, || async { scaled.get_opt(&worker).await.unwrap() }).await;
    let spec = &so.data["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], worker);
    assert_eq!(spec["maxReplicaCount"], 3, "never more workers than partitions");
    let trigger = &spec["triggers"][0];
    assert_eq!(trigger["type"], "kafka");
    assert_eq!(trigger["metadata"]["topic"], format!("chainwatch.blocks.{net}"));
    assert_eq!(trigger["metadata"]["consumerGroup"], format!("chainwatch-filter-{net}"));
    assert_eq!(trigger["metadata"]["lagThreshold"], "50");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    assert!(hpas.get_opt(&worker).await.unwrap().is_none(), "no HPA next to the ScaledObject");

    // switching to CPU: the HPA replaces the ScaledObject
    harness::apply_value(&client, &network("Cpu")).await.unwrap();
    eventually("the HPA", T, || async { hpas.get_opt(&worker).await.unwrap() }).await;
    eventually("the ScaledObject removed", T, || async {
        scaled.get_opt(&worker).await.unwrap().is_none().then_some(())
    })
    .await;
    op.stop().await;
    harness::reset(&client).await;
    chainwatch_platform::bus::kafka::KafkaArgs::new(chainwatch_devkit::testbed::kafka_bootstrap())
        .admin()
        .unwrap()
        .delete_topic(&format!("chainwatch.blocks.{net}"))
        .await
        .unwrap();
}

//! The Network controller against kube-testenv and the broker: the objects it writes (read back
//! field by field), what a spec change touches, deletion with the finalizer, and its status.

use std::collections::BTreeMap;
use std::time::Duration;

use chainwatch_crds::Network;
use chainwatch_devkit::testbed::unique;
use chainwatch_platform::bus::kafka::KafkaArgs;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::harness::{self, Operator, condition, eventually, get, repo};

const T: Duration = Duration::from_secs(30);

fn labels(network: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "chainwatch".into()),
        ("app.kubernetes.io/instance".into(), format!("{component}-{network}")),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/part-of".into(), "chainwatch".into()),
        ("app.kubernetes.io/managed-by".into(), "chainwatch-operator".into()),
        ("chainwatch.io/network".into(), network.into()),
    ])
}

fn env_of(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, String> {
    c.env.clone().unwrap_or_default().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect()
}

fn kafka() -> KafkaArgs {
    KafkaArgs::new(chainwatch_devkit::testbed::kafka_bootstrap())
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_some()
}

async fn network_yaml(client: &Client, name: &str, extra: serde_json::Value) {
    let mut spec = json!({"type": "evm", "chainId": 1, "rpc": [{"url": "http://127.0.0.1:1"}], "kafka": {"partitions": 2}});
    json_patch(&mut spec, &extra);
    harness::apply_value(client, &json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": name}, "spec": spec})).await.unwrap();
}

fn json_patch(a: &mut serde_json::Value, b: &serde_json::Value) {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            match a.get_mut(k) {
                Some(x) if x.is_object() && v.is_object() => json_patch(x, v),
                _ => {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_network_becomes_an_ingester_workers_and_an_autoscaler() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &[]).await;
    harness::apply_file(&client, &repo().join("examples/10-network-ethereum-mainnet.yaml")).await;
    let net = "ethereum-mainnet";
    let name = format!("chainwatch-ingester-{net}");
    let worker = format!("chainwatch-worker-{net}");

    // the status is written after every child is applied: wait for it, not for the first child
    let networks: Api<Network> = Api::all(client.clone());
    let network = eventually("the Network's first status", T, || async {
        let n = networks.get(net).await.unwrap();
        n.status.as_ref().and_then(|s| s.observed_generation).map(|_| n)
    })
    .await;
    let sts: StatefulSet = get(&Api::namespaced(client.clone(), &ns), &name).await;
    // identity, labels, owner
    assert_eq!(sts.labels(), &labels(net, "ingester"));
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller, &owner.uid),
        ("Network", net, Some(true), network.metadata.uid.as_ref().unwrap())
    );
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some(name.as_str()));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(name.as_str()));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("chainwatch:test"), "the operator passes its image on");
    assert_eq!(c.args.as_deref(), Some(&["ingester".to_string()][..]));
    let env = env_of(c);
    assert_eq!(env["CHAINWATCH_NETWORK"], net);
    assert_eq!(env["KAFKA_BOOTSTRAP"], chainwatch_devkit::testbed::kafka_bootstrap());
    assert_eq!(env["CHAINWATCH_CHECKPOINT_DIR"], "/var/lib/chainwatch");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(
        (sc.run_as_non_root, sc.read_only_root_filesystem, sc.allow_privilege_escalation),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/var/lib/chainwatch");
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("checkpoint"));
    assert_eq!(
        claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "64Mi"
    );

    // its Service and least-privilege RBAC
    let svc: Service = get(&Api::namespaced(client.clone(), &ns), &name).await;
    let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("metrics"), 8080));
    assert_eq!(svc.spec.as_ref().unwrap().selector.as_ref().unwrap()["chainwatch.io/network"], net);
    assert!(exists(&Api::<ServiceAccount>::namespaced(client.clone(), &ns), &name).await);
    // the one ingester binding (config/rbac/ingester.yaml) names its ServiceAccount; the operator
    // creates no ClusterRole or ClusterRoleBinding of its own
    let binding: ClusterRoleBinding = get(&Api::all(client.clone()), "chainwatch-ingester").await;
    assert_eq!(binding.role_ref.name, "chainwatch-ingester");
    assert!(
        binding.subjects.as_ref().unwrap().iter().any(|s| (
            s.kind.as_str(),
            s.name.as_str(),
            s.namespace.as_deref()
        ) == (
            "ServiceAccount",
            name.as_str(),
            Some(ns.as_str())
        )),
        "{binding:?}"
    );
    assert!(!exists(&Api::<ClusterRole>::all(client.clone()), &name).await);
    assert!(!exists(&Api::<ClusterRoleBinding>::all(client.clone()), &name).await);
    assert!(
        !exists(&Api::<Role>::namespaced(client.clone(), &ns), &name).await,
        "no Secret access without urlSecretRef"
    );

    // workers and their autoscaler (no KEDA here: an HPA on CPU)
    let dep: Deployment = get(&Api::namespaced(client.clone(), &ns), &worker).await;
    assert_eq!(dep.labels(), &labels(net, "worker"));
    let wc = &dep.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        (wc.image.as_deref(), wc.args.as_deref()),
        (Some("chainwatch:test"), Some(&["worker".to_string()][..]))
    );
    assert_eq!(env_of(wc)["CHAINWATCH_NETWORK"], net);
    let replicas_owner = dep
        .metadata
        .managed_fields
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("chainwatch-operator"))
        .any(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.to_string().contains("f:replicas")));
    assert!(!replicas_owner, "the operator leaves replicas to the autoscaler");
    let hpa: HorizontalPodAutoscaler = get(&Api::namespaced(client.clone(), &ns), &worker).await;
    let h = hpa.spec.unwrap();
    assert_eq!((h.min_replicas, h.max_replicas), (Some(1), 6), "example: 1..6 over 12 partitions");
    assert_eq!(
        (h.scale_target_ref.kind.as_str(), h.scale_target_ref.name.as_str()),
        ("Deployment", worker.as_str())
    );
    let cpu = h.metrics.unwrap()[0].resource.clone().unwrap();
    assert_eq!((cpu.name.as_str(), cpu.target.average_utilization), ("cpu", Some(70)));

    // the topic, and the status saying what is missing
    let topic = "chainwatch.blocks.ethereum-mainnet";
    let partitions = eventually("the topic", T, || async {
        kafka().admin().unwrap().partitions(topic).await.ok().flatten()
    })
    .await;
    assert!(partitions >= 12, "{partitions} partitions");
    let n: Network = eventually("Network status", T, || async {
        let n: Network = get(&Api::all(client.clone()), net).await;
        condition(&n, "TopicReady").is_some_and(|c| c.0 == "True").then_some(n)
    })
    .await;
    let ready = condition(&n, "Ready").unwrap();
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "WaitingForIngester"), "{}", ready.2);
    assert_eq!(n.status.as_ref().unwrap().observed_generation, n.metadata.generation);
    assert!(n.finalizers().iter().any(|f| f == "chainwatch.io/kafka-topic"));

    // the ingester reports progress: Ready follows
    let progress = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "status": {"conditions": [
        {"type": "Progressing", "status": "True", "reason": "Ingesting", "message": "at block 21000000", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    Api::<Network>::all(client.clone())
        .patch_status(net, &PatchParams::apply("chainwatch-ingester").force(), &Patch::Apply(&progress))
        .await
        .unwrap();
    eventually("Ready=True once the ingester progresses", T, || async {
        let n: Network = get(&Api::all(client.clone()), net).await;
        condition(&n, "Ready").is_some_and(|c| c.0 == "True" && c.1 == "Running").then_some(())
    })
    .await;
    let n: Network = get(&Api::all(client.clone()), net).await;
    assert!(condition(&n, "Progressing").is_some(), "the operator keeps the ingester's conditions");
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_max_replicas_updates_only_the_autoscaler() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &[]).await;
    let net = unique("scale");
    network_yaml(&client, &net, json!({"kafka": {"partitions": 8}, "workers": {"maxReplicas": 6}})).await;
    let worker = format!("chainwatch-worker-{net}");
    let ingester = format!("chainwatch-ingester-{net}");
    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    eventually("the HPA", T, || async {
        hpa_api.get_opt(&worker).await.unwrap().filter(|h| h.spec.as_ref().unwrap().max_replicas == 6)
    })
    .await;
    // settle: the status write after the children
    eventually("TopicReady", T, || async {
        condition(&get(&Api::<Network>::all(client.clone()), &net).await, "TopicReady").map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    async fn versions(client: &Client, ns: &str, ingester: &str, worker: &str) -> Vec<String> {
        vec![
            get(&Api::<StatefulSet>::namespaced(client.clone(), ns), ingester)
                .await
                .resource_version()
                .unwrap(),
            get(&Api::<Service>::namespaced(client.clone(), ns), ingester).await.resource_version().unwrap(),
            get(&Api::<ServiceAccount>::namespaced(client.clone(), ns), ingester)
                .await
                .resource_version()
                .unwrap(),
            get(&Api::<Deployment>::namespaced(client.clone(), ns), worker).await.resource_version().unwrap(),
            get(&Api::<ClusterRoleBinding>::all(client.clone()), "chainwatch-ingester")
                .await
                .resource_version()
                .unwrap(),
        ]
    }
    let before = versions(&client, &ns, &ingester, &worker).await;
    let hpa_before = get(&hpa_api, &worker).await.resource_version();
    let reconciles_before = op.metric("chainwatch_operator_reconciles_total{controller=\"network\"}").await;

    network_yaml(&client, &net, json!({"kafka": {"partitions": 8}, "workers": {"maxReplicas": 3}})).await;
    let hpa = eventually("maxReplicas 3 on the HPA", T, || async {
        hpa_api.get_opt(&worker).await.unwrap().filter(|h| h.spec.as_ref().unwrap().max_replicas == 3)
    })
    .await;
    assert_ne!(hpa.resource_version(), hpa_before);
    eventually("a reconcile after the change", T, || async {
        (op.metric("chainwatch_operator_reconciles_total{controller=\"network\"}").await > reconciles_before)
            .then_some(())
    })
    .await;
    assert_eq!(
        versions(&client, &ns, &ingester, &worker).await,
        before,
        "StatefulSet, Service, ServiceAccount, Deployment and RBAC are not rewritten"
    );

    // more replicas than partitions is capped
    network_yaml(&client, &net, json!({"kafka": {"partitions": 8}, "workers": {"maxReplicas": 50}})).await;
    eventually("maxReplicas capped at the 8 partitions", T, || async {
        hpa_api.get_opt(&worker).await.unwrap().filter(|h| h.spec.as_ref().unwrap().max_replicas == 8)
    })
    .await;
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_network_removes_its_children_and_topic() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &[]).await;
    let deleted = unique("gone");
    let kept = unique("kept");
    network_yaml(&client, &deleted, json!({})).await;
    network_yaml(&client, &kept, json!({"kafka": {"deletionPolicy": "Retain"}})).await;
    for net in [&deleted, &kept] {
        eventually("TopicReady", T, || async {
            condition(&get(&Api::<Network>::all(client.clone()), net).await, "TopicReady")
                .is_some_and(|c| c.0 == "True")
                .then_some(())
        })
        .await;
        assert!(
            kafka().admin().unwrap().partitions(&format!("chainwatch.blocks.{net}")).await.unwrap().is_some()
        );
    }
    let networks: Api<Network> = Api::all(client.clone());
    for net in [&deleted, &kept] {
        networks.delete(net, &DeleteParams::default()).await.unwrap();
    }
    for net in [&deleted, &kept] {
        eventually("the Network gone (finalizer done)", T, || async {
            networks.get_opt(net).await.unwrap().is_none().then_some(())
        })
        .await;
        let name = format!("chainwatch-ingester-{net}");
        let worker = format!("chainwatch-worker-{net}");
        assert!(!exists(&Api::<StatefulSet>::namespaced(client.clone(), &ns), &name).await);
        assert!(!exists(&Api::<Service>::namespaced(client.clone(), &ns), &name).await);
        assert!(!exists(&Api::<ServiceAccount>::namespaced(client.clone(), &ns), &name).await);
        assert!(!exists(&Api::<Deployment>::namespaced(client.clone(), &ns), &worker).await);
        assert!(!exists(&Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns), &worker).await);
        let binding: ClusterRoleBinding = get(&Api::all(client.clone()), "chainwatch-ingester").await;
        assert!(
            !binding.subjects.unwrap_or_default().iter().any(|s| s.name == name),
            "a deleted Network's ingester loses its permissions"
        );
    }
    let admin = kafka().admin().unwrap();
    assert_eq!(
        admin.partitions(&format!("chainwatch.blocks.{deleted}")).await.unwrap(),
        None,
        "deletionPolicy Delete (default) deletes the topic"
    );
    assert!(
        admin.partitions(&format!("chainwatch.blocks.{kept}")).await.unwrap().is_some(),
        "deletionPolicy Retain keeps it"
    );
    // the deletion is announced, and a repeated cleanup of a Network already gone is no failure
    let events = eventually("the TopicDeleted event", T, || async {
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        events.iter().any(|e| e.reason.as_deref() == Some("TopicDeleted")).then_some(events)
    })
    .await;
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| format!("{:?}: {:?}", e.reason, e.message))
        .collect();
    assert!(warnings.is_empty(), "no Warning events for a clean deletion: {warnings:#?}");
    admin.delete_topic(&format!("chainwatch.blocks.{kept}")).await.unwrap();
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_secrets_are_readable_by_the_ingester_only_by_name_and_checked() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &[]).await;
    let net = unique("secret");
    network_yaml(&client, &net, json!({"rpc": [{"urlSecretRef": {"name": "alchemy", "key": "url"}}]})).await;
    let networks: Api<Network> = Api::all(client.clone());
    let (_, reason, message) = eventually("Ready=False SecretNotFound", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 == "SecretNotFound")
    })
    .await;
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("spec.rpc[0].urlSecretRef") && message.contains("alchemy"), "{message}");
    let name = format!("chainwatch-ingester-{net}");
    let role: Role = get(&Api::namespaced(client.clone(), &ns), &name).await;
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        (rule.resources.as_deref(), rule.resource_names.as_deref(), rule.verbs.as_slice()),
        (Some(&["secrets".to_string()][..]), Some(&["alchemy".to_string()][..]), &["get".to_string()][..])
    );
    let rb: RoleBinding = get(&Api::namespaced(client.clone(), &ns), &name).await;
    assert_eq!(rb.role_ref.name, name);

    harness::apply_value(&client, &harness::secret(&ns, "alchemy", "url", "https://eth.example/v2/key"))
        .await
        .unwrap();
    eventually("the Secret found", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 == "WaitingForIngester")
    })
    .await;

    // dropping the secret reference drops the Role
    network_yaml(&client, &net, json!({"rpc": [{"url": "http://127.0.0.1:1"}]})).await;
    eventually("the Role removed", T, || async {
        (!exists(&Api::<Role>::namespaced(client.clone(), &ns), &name).await).then_some(())
    })
    .await;
    op.stop().await;
    harness::reset(&client).await;
    kafka().admin().unwrap().delete_topic(&format!("chainwatch.blocks.{net}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_pipelines_from_its_own_image() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    // the operator's Pod as the Deployment in config/manager creates it (kube-testenv runs no
    // kubelet: the Pod object is enough)
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chainwatch-operator-7d9f-abcde", "namespace": ns},
        "spec": {"containers": [{"name": "operator", "image": "registry.example/chainwatch:v1.2.3", "imagePullPolicy": "IfNotPresent"}]}});
    harness::apply_value(&client, &pod).await.unwrap();
    let op =
        Operator::start(&ns, "chainwatch-operator-7d9f-abcde", &["--image-from-pod", "--no-kafka"]).await;
    let net = unique("img");
    network_yaml(&client, &net, json!({})).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = eventually("the ingester StatefulSet", T, || async {
        sts_api.get_opt(&format!("chainwatch-ingester-{net}")).await.unwrap()
    })
    .await;
    let c = &sts.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        (c.image.as_deref(), c.image_pull_policy.as_deref()),
        (Some("registry.example/chainwatch:v1.2.3"), Some("IfNotPresent"))
    );
    // --no-kafka: the topic is someone else's, not a problem of the Network
    let n = eventually("the Network waiting for its ingester", T, || async {
        let n: Network = get(&Api::all(client.clone()), &net).await;
        condition(&n, "Ready").filter(|c| c.1 == "WaitingForIngester").map(|_| n)
    })
    .await;
    let topic = condition(&n, "TopicReady").unwrap();
    assert_eq!((topic.0.as_str(), topic.1.as_str()), ("True", "ManagedElsewhere"), "{}", topic.2);
    assert!(topic.2.contains(&format!("chainwatch.blocks.{net}")), "{}", topic.2);
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_credentials_come_from_a_secret_that_rolls_the_pods_when_it_changes() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-a", &["--no-kafka", "--kafka-secret=kafka-creds"]).await;
    let net = unique("sasl");
    network_yaml(&client, &net, json!({})).await;
    let networks: Api<Network> = Api::all(client.clone());
    let ready = eventually("Ready=False while the Secret is missing", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 == "KafkaCredentialsNotFound")
    })
    .await;
    assert!(ready.2.contains(&format!("Secret {ns}/kafka-creds")), "{}", ready.2);
    // no pipeline while the Secret is missing: its pods could not start
    let sts_name = format!("chainwatch-ingester-{net}");
    assert!(Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt(&sts_name).await.unwrap().is_none());

    let password = "hunter2-kafka-password";
    harness::apply_value(&client, &harness::secret(&ns, "kafka-creds", "sasl.password", password))
        .await
        .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let version = |v: Option<String>| v.unwrap();
    let first = version(get(&secrets, "kafka-creds").await.metadata.resource_version);
    let (sts_api, dep_api): (Api<StatefulSet>, Api<Deployment>) =
        (Api::namespaced(client.clone(), &ns), Api::namespaced(client.clone(), &ns));
    let templates = || async {
        let sts = sts_api.get_opt(&format!("chainwatch-ingester-{net}")).await.unwrap();
        let dep = dep_api.get_opt(&format!("chainwatch-worker-{net}")).await.unwrap();
        match (sts, dep) {
            (Some(s), Some(d)) => vec![s.spec.unwrap().template, d.spec.unwrap().template],
            _ => Vec::new(),
        }
    };
    let annotation = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        t.metadata.as_ref()?.annotations.as_ref()?.get("chainwatch.io/kafka-credentials-version").cloned()
    };
    eventually("both pod templates carry the Secret's version", T, || async {
        let t = templates().await;
        (t.len() == 2 && t.iter().all(|t| annotation(t).as_deref() == Some(first.as_str()))).then_some(())
    })
    .await;
    for t in templates().await {
        let pod = t.spec.unwrap();
        let volume = pod.volumes.unwrap().into_iter().find(|v| v.name == "kafka-credentials").unwrap();
        let source = volume.secret.unwrap();
        assert_eq!(
            (source.secret_name.as_deref(), source.default_mode, source.optional),
            (Some("kafka-creds"), Some(0o440), Some(false))
        );
        let c = &pod.containers[0];
        let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "kafka-credentials").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/chainwatch/kafka", Some(true)));
        assert_eq!(env_of(c)["KAFKA_CREDENTIALS_DIR"], "/etc/chainwatch/kafka");
    }
    // the status is written after the children
    eventually("Ready no longer says the Secret is missing", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 != "KafkaCredentialsNotFound")
    })
    .await;

    // rotated: the pods roll
    harness::apply_value(&client, &harness::secret(&ns, "kafka-creds", "sasl.password", "rotated-password"))
        .await
        .unwrap();
    let second = version(get(&secrets, "kafka-creds").await.metadata.resource_version);
    assert_ne!(first, second);
    eventually("both pod templates carry the new version", T, || async {
        templates().await.iter().all(|t| annotation(t).as_deref() == Some(second.as_str())).then_some(())
    })
    .await;

    // the password is nowhere but in its Secret
    let mut written = serde_json::to_string(&templates().await).unwrap();
    written += &serde_json::to_string(&get(&networks, &net).await).unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    written += &serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap();
    assert!(!written.contains(password) && !written.contains("rotated-password"));
    op.stop().await;
    harness::reset(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_settings_come_from_a_config_map_whose_edits_count_without_a_restart() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let bootstrap = chainwatch_devkit::testbed::kafka_bootstrap();
    let settings = |options: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kafka", "namespace": ns},
            "data": {"kafka-bootstrap": bootstrap, "kafka-options": options}})
    };
    harness::apply_value(&client, &settings("client.rack=rack-a")).await.unwrap();
    // the flag points nowhere: only the ConfigMap's bootstrap can make the topic
    let op =
        Operator::start(&ns, "op-a", &["--kafka-config-map=kafka", "--kafka-bootstrap=127.0.0.1:1"]).await;
    let net = unique("kcm");
    network_yaml(&client, &net, json!({})).await;
    let networks: Api<Network> = Api::all(client.clone());
    eventually("the topic, made through the ConfigMap's bootstrap", T, || async {
        condition(&get(&networks, &net).await, "TopicReady").filter(|c| c.0 == "True")
    })
    .await;
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    let version = || async { get(&configmaps, "kafka").await.metadata.resource_version.unwrap() };
    let pods = || async {
        let sts: StatefulSet =
            get(&Api::namespaced(client.clone(), &ns), &format!("chainwatch-ingester-{net}")).await;
        let dep: Deployment =
            get(&Api::namespaced(client.clone(), &ns), &format!("chainwatch-worker-{net}")).await;
        [sts.spec.unwrap().template, dep.spec.unwrap().template]
            .map(|t| {
                let annotations = t.metadata.and_then(|m| m.annotations).unwrap_or_default();
                let env = env_of(&t.spec.unwrap().containers[0]);
                (
                    annotations.get("chainwatch.io/kafka-settings-version").cloned(),
                    env.get("KAFKA_BOOTSTRAP").cloned(),
                    env.get("KAFKA_OPTIONS").cloned(),
                )
            })
            .to_vec()
    };
    let first = version().await;
    let want =
        |v: &str, options: &str| (Some(v.to_string()), Some(bootstrap.clone()), Some(options.to_string()));
    eventually("the pipelines given the ConfigMap's settings", T, || async {
        let p = pods().await;
        p.iter().all(|x| *x == want(&first, "client.rack=rack-a")).then_some(())
    })
    .await;

    // a broken edit: the Network says which entry, without quoting it
    harness::apply_value(&client, &settings("client.rack=rack-b,sasl.password:hunter2")).await.unwrap();
    let ready = eventually("Ready=False on unparsable options", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 == "InvalidKafkaSettings")
    })
    .await;
    assert!(ready.2.contains("key kafka-options: entry 2 is not key=value"), "{}", ready.2);
    assert!(!ready.2.contains("hunter2"), "{}", ready.2);

    // fixed: the pods roll with the new settings, no restart
    harness::apply_value(&client, &settings("client.rack=rack-b")).await.unwrap();
    let second = version().await;
    eventually("the pipelines given the edited settings", T, || async {
        let p = pods().await;
        p.iter().all(|x| *x == want(&second, "client.rack=rack-b")).then_some(())
    })
    .await;
    eventually("Ready no longer says the settings are invalid", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 != "InvalidKafkaSettings")
    })
    .await;

    configmaps.delete("kafka", &DeleteParams::default()).await.unwrap();
    let ready = eventually("Ready=False without the ConfigMap", T, || async {
        condition(&get(&networks, &net).await, "Ready").filter(|c| c.1 == "KafkaSettingsNotFound")
    })
    .await;
    assert!(ready.2.contains(&format!("ConfigMap {ns}/kafka")), "{}", ready.2);
    op.stop().await;
    harness::reset(&client).await;
}

/// A pipeline pod that cannot run: the ingester's container crash-loops (its status written as a
/// kubelet would; kube-testenv runs none). The Network says so, naming the pod, and is Stalled
/// for kstatus; once the pod runs, it is back to waiting for the ingester (Reconciling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_ingester_stalls_its_network_with_the_pods_reason() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let op = Operator::start(&ns, "op-pods", &[]).await;
    let net = unique("crash");
    network_yaml(&client, &net, json!({})).await;
    let networks: Api<Network> = Api::all(client.clone());
    let waiting = eventually("the Network waiting for its ingester", T, || async {
        let n = get(&networks, &net).await;
        condition(&n, "Ready").filter(|c| c.1 == "WaitingForIngester").map(|_| n)
    })
    .await;
    assert_eq!(
        condition(&waiting, "Reconciling").map(|c| (c.0, c.1)),
        Some(("True".into(), "WaitingForIngester".into()))
    );
    assert_eq!(condition(&waiting, "Stalled").map(|c| c.0), Some("False".into()));

    let sts: StatefulSet =
        get(&Api::namespaced(client.clone(), &ns), &format!("chainwatch-ingester-{net}")).await;
    let pod_labels = sts.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let pod_name = format!("chainwatch-ingester-{net}-0");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    harness::apply_value(&client, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": ns, "labels": pod_labels},
        "spec": {"containers": [{"name": "ingester", "image": "chainwatch:test"}]}})).await.unwrap();
    let crashing = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "containerStatuses": [{
        "name": "ingester", "ready": false, "restartCount": 4, "image": "chainwatch:test", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container=ingester"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
    pods.patch_status(&pod_name, &PatchParams::apply("kubelet").force(), &Patch::Apply(&crashing))
        .await
        .unwrap();
    let stalled = eventually("the Network Stalled by the crash loop", T, || async {
        let n = get(&networks, &net).await;
        condition(&n, "Ready").filter(|c| c.1 == "CrashLoopBackOff").map(|_| n)
    })
    .await;
    let (status, _, message) = condition(&stalled, "Ready").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains(&format!("pod {pod_name}, container ingester: CrashLoopBackOff"))
            && message.contains("last exit 1 (Error)")
            && message.contains("restarts: 4"),
        "{message}"
    );
    assert_eq!(
        condition(&stalled, "Stalled").map(|c| (c.0, c.1)),
        Some(("True".into(), "CrashLoopBackOff".into()))
    );
    assert_eq!(condition(&stalled, "Reconciling").map(|c| c.0), Some("False".into()));

    // the pod runs again: back to waiting for the ingester's report
    let running = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "containerStatuses": [{
        "name": "ingester", "ready": true, "restartCount": 5, "image": "chainwatch:test", "imageID": "",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status(&pod_name, &PatchParams::apply("kubelet").force(), &Patch::Apply(&running))
        .await
        .unwrap();
    eventually("the Network waiting for its ingester again", T, || async {
        let n = get(&networks, &net).await;
        let stalled = condition(&n, "Stalled").is_some_and(|c| c.0 == "False");
        condition(&n, "Ready").filter(|c| c.1 == "WaitingForIngester" && stalled)
    })
    .await;
    let _ = pods.delete(&pod_name, &DeleteParams::default()).await;
    op.stop().await;
    harness::reset(&client).await;
}

//! A namespace-scoped install (`config/namespaced`), run as its ServiceAccounts against the API
//! server enforcing RBAC: it admits in the namespaces it watches and reads nothing anywhere else.

use chainwatch_crds::{Monitor, Tenant, Trigger};
use chainwatch_devkit::testbed::{kubeconfig_for, unique};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use crate::bed::{Proc, T, TRANSFER_ABI, client_of};
use crate::harness::{self, condition, eventually, get};

/// The value of an environment variable of a container in a rendered or read Deployment.
fn env_of(deployment: &Value, container: &str, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)?["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

fn is_forbidden<T: std::fmt::Debug>(r: &Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 403)
}

/// The install as rendered, applied server-side; the operator and a worker run with the
/// environment that install gives them, each as its ServiceAccount. A Tenant lists a watched
/// namespace and one the install does not watch: the Monitor and Trigger of the watched one are
/// admitted and loaded; those of the other are never seen (the Tenant says why), and neither
/// process may list, read or watch anything there, nor Monitors cluster-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_scoped_install_admits_in_its_namespaces_and_reads_nothing_else() {
    let admin = harness::clean_slate().await;
    // an install replacing the cluster-wide one (other tests apply config/rbac) has no
    // cluster-wide bindings for Monitors and Triggers
    for name in ["chainwatch-operator-namespaced", "chainwatch-worker-namespaced"] {
        let _ = Api::<ClusterRoleBinding>::all(admin.clone()).delete(name, &DeleteParams::default()).await;
    }
    let docs = harness::kustomize("config/namespaced");
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"
            && ["chainwatch-operator-namespaced", "chainwatch-worker-namespaced"]
                .contains(&d["metadata"]["name"].as_str().unwrap_or_default())),
        "no cluster-wide binding of the namespaced roles"
    );
    for doc in docs.iter().filter(|d| d["kind"] != "CustomResourceDefinition") {
        harness::apply_value(&admin, doc)
            .await
            .unwrap_or_else(|e| panic!("applying {} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    }
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "chainwatch-operator")
        .expect("the operator's Deployment");
    let system = deployment["metadata"]["namespace"].as_str().unwrap().to_string();
    let watched =
        env_of(deployment, "operator", "CHAINWATCH_WATCH_NAMESPACES").expect("the watched namespaces");
    let watched: Vec<&str> = watched.split(',').collect();
    // every watched namespace has its two bindings in the install
    for ns in &watched {
        for (name, role) in [
            ("chainwatch-operator", "chainwatch-operator-namespaced"),
            ("chainwatch-worker", "chainwatch-worker-namespaced"),
        ] {
            let rb: RoleBinding = get(&Api::namespaced(admin.clone(), ns), name).await;
            assert_eq!(rb.role_ref.name, role, "{ns}/{name}");
        }
    }
    let (inside, outside) = (watched[0].to_string(), unique("team-c"));
    harness::namespace(&admin, &outside).await;

    let dir = tempfile::Builder::new().prefix("chainwatch-scoped-").disable_cleanup(true).tempdir().unwrap();
    let sa = |name: &str| kubeconfig_for(&format!("system:serviceaccount:{system}:{name}"), &[]);
    let op_kc = sa("chainwatch-operator");
    let watch_env = watched.join(",");
    let mut operator = Proc::spawn_env(
        "operator",
        &[
            "operator".into(),
            format!("--namespace={system}"),
            "--image=chainwatch:test".into(),
            "--identity=op-scoped".into(),
            "--lease-seconds=6".into(),
            "--allow-destination=127.0.0.1/32".into(),
        ],
        dir.path(),
        &[("KUBECONFIG", op_kc.to_str().unwrap()), ("CHAINWATCH_WATCH_NAMESPACES", &watch_env)],
    );
    operator.ready().await;

    let net = format!("s{}", chainwatch_platform::codec::now_ms() % 1000);
    let apply = |v: Value| {
        let admin = admin.clone();
        async move { harness::apply_value(&admin, &v).await.unwrap_or_else(|e| panic!("applying {v}: {e}")) }
    };
    let tenant = unique("scoped");
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": tenant}, "spec": {"namespaces": [inside, outside]}})).await;
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "chainId": 31337, "rpc": [{"url": "http://127.0.0.1:9"}], "confirmations": 0, "kafka": {"partitions": 1}}})).await;
    for ns in [&inside, &outside] {
        apply(harness::secret(ns, "hmac", "key", "s3cret")).await;
        apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": ns},
            "spec": {"webhook": {"url": "http://127.0.0.1:9/hook", "secretRef": {"name": "hmac", "key": "key"}}, "message": {"title": "t", "body": "b"}}})).await;
        apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "m", "namespace": ns}, "spec": {
            "networks": [net], "addresses": [{"address": "0xdac17f958d2ee523a2206206994597c13d831ec7", "contractSpec": serde_json::from_str::<Value>(TRANSFER_ABI).unwrap()}],
            "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)"}]}, "triggers": ["hook"]}})).await;
    }

    // the watched namespace: admitted (its Secret read), its people bound
    let monitors_in = Api::<Monitor>::namespaced(admin.clone(), &inside);
    eventually("the watched namespace's Monitor admitted", T, || async {
        condition(&get(&monitors_in, "m").await, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let triggers_in = Api::<Trigger>::namespaced(admin.clone(), &inside);
    eventually("the watched namespace's Trigger admitted (its Secret read)", T, || async {
        condition(&get(&triggers_in, "hook").await, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    // the Tenant names the namespace the install leaves alone, and the fix
    let tenants: Api<Tenant> = Api::all(admin.clone());
    let (_, reason, message) = eventually("the Tenant tells of the unwatched namespace", T, || async {
        condition(&get(&tenants, &tenant).await, "Ready").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "NamespacesNotWatched", "{message}");
    assert!(message.contains(&outside) && message.contains("--watch-namespace"), "{message}");
    let unwatched = message.split("Triggers of ").nth(1).unwrap_or_default();
    assert!(unwatched.contains(&outside) && !unwatched.contains(&inside), "{message}");
    let editors = "chainwatch-tenant-editors";
    assert!(Api::<RoleBinding>::namespaced(admin.clone(), &inside).get_opt(editors).await.unwrap().is_some());
    assert!(
        Api::<RoleBinding>::namespaced(admin.clone(), &outside).get_opt(editors).await.unwrap().is_none()
    );

    // the workers the operator runs watch what it watches; one runs here as its ServiceAccount,
    // loading every Monitor that compiles (not only admitted ones: a worker that saw the other
    // namespace would load its Monitor too)
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &system);
    let workers = eventually("the workers' Deployment", T, || async {
        deployments.get_opt(&format!("chainwatch-worker-{net}")).await.unwrap()
    })
    .await;
    let workers = serde_json::to_value(&workers).unwrap();
    assert_eq!(
        env_of(&workers, "worker", "CHAINWATCH_WATCH_NAMESPACES").as_deref(),
        Some(watch_env.as_str())
    );
    let wk_kc = sa("chainwatch-worker");
    let mut worker = Proc::spawn_env(
        "worker",
        &[
            "worker".into(),
            "--instance-id=scoped-w0".into(),
            format!("--network={net}"),
            "--admission=local".into(),
            // the filter stage only: a notify member of another identity would hold partitions
            // of the shared notify group for its session after it stops, as a static member
            "--notify=false".into(),
            "--status-interval=500ms".into(),
        ],
        dir.path(),
        &[("KUBECONFIG", wk_kc.to_str().unwrap()), ("CHAINWATCH_WATCH_NAMESPACES", &watch_env)],
    );
    worker.ready().await;
    eventually("the worker evaluates the one Monitor it can see", T, || async {
        worker.metric(&format!("chainwatch_worker_monitors{{network=\"{net}\"}}")).await.filter(|n| *n == 1.0)
    })
    .await;
    for (p, prefix) in [(&operator, "chainwatch_operator"), (&worker, "chainwatch_worker")] {
        for kind in ["Monitor", "Trigger"] {
            assert_eq!(
                p.metric(&format!("{prefix}_cached_objects{{kind=\"{kind}\"}}")).await,
                Some(1.0),
                "{}: {kind}",
                p.name
            );
            // it never tried outside: a refused list or watch would count here
            assert_eq!(
                p.metric(&format!("{prefix}_watch_errors_total{{kind=\"{kind}\"}}")).await,
                Some(0.0),
                "{}: {kind}",
                p.name
            );
        }
    }
    // the unwatched namespace's objects were never touched
    let monitor_out = get(&Api::<Monitor>::namespaced(admin.clone(), &outside), "m").await;
    assert!(monitor_out.status.is_none(), "the unwatched Monitor got a status: {:?}", monitor_out.status);
    let trigger_out = get(&Api::<Trigger>::namespaced(admin.clone(), &outside), "hook").await;
    assert!(trigger_out.status.is_none(), "the unwatched Trigger got a status");

    // and the API server refuses them everything outside the watched namespaces
    for (who, kc) in [("operator", &op_kc), ("worker", &wk_kc)] {
        let c = client_of(kc).await;
        let lp = ListParams::default();
        assert!(
            Api::<Monitor>::namespaced(c.clone(), &inside).list(&lp).await.is_ok(),
            "{who} lists {inside}"
        );
        assert!(
            is_forbidden(&Api::<Monitor>::namespaced(c.clone(), &outside).list(&lp).await),
            "{who}: Monitors of {outside}"
        );
        assert!(
            is_forbidden(&Api::<Monitor>::namespaced(c.clone(), &outside).get("m").await),
            "{who}: a Monitor of {outside}"
        );
        assert!(
            is_forbidden(&Api::<Trigger>::namespaced(c.clone(), &outside).list(&lp).await),
            "{who}: Triggers of {outside}"
        );
        assert!(
            is_forbidden(&Api::<Secret>::namespaced(c.clone(), &outside).get("hmac").await),
            "{who}: a Secret of {outside}"
        );
        assert!(is_forbidden(&Api::<Monitor>::all(c.clone()).list(&lp).await), "{who}: every Monitor");
        assert!(is_forbidden(&Api::<Trigger>::all(c.clone()).list(&lp).await), "{who}: every Trigger");
        assert!(is_forbidden(&Api::<Secret>::all(c.clone()).list(&lp).await), "{who}: every Secret");
    }

    worker.stop().await;
    operator.stop().await;
    harness::reset(&admin).await;
}

//! Tenants cannot read, break or impersonate one another — tried as a hostile tenant would,
//! against the real parts: the API server enforcing RBAC, the broker, the processes.

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_devkit::receivers::HttpReceiver;
use chainwatch_devkit::testbed::{kubeconfig_for, unique};
use chainwatch_platform::bus::DEADLETTER_TOPIC;
use chainwatch_platform::codec::DeadLetterRecord;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::bed::{Bed, Proc, T, TRANSFER_ABI, client_of};
use crate::harness::{self, condition, eventually, get};

/// A JSON value nested `depth` objects deep (what the API server accepts and a decoder with a
/// depth limit does not).
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_does_not_decode_stops_only_itself() {
    let bed = Bed::start(&[]).await;
    bed.webhook("hook", "/hook").await;
    bed.monitor("large", "value > 1000", &["hook"]).await;
    bed.admitted("large").await;
    // another tenant's Monitor, nested deeper than any decoder allows
    let evil = unique("evil");
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": evil}, "spec": {"namespaces": [evil]}})).await;
    harness::namespace(&bed.client, &evil).await;
    let mut abi: Vec<Value> = serde_json::from_str(TRANSFER_ABI).unwrap();
    abi[0]["deep"] = nested(200);
    let deep = json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "deep", "namespace": evil}, "spec": {
        "networks": [bed.network], "addresses": [{"address": format!("{:#x}", bed.token), "contractSpec": abi}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)"}]}, "triggers": []}});
    // the API server takes it; its answer does not decode either, so it is read guarded
    Api::<chainwatch_platform::cache::Guarded<Monitor>>::namespaced(bed.client.clone(), &evil)
        .patch("deep", &kube::api::PatchParams::apply("kubectl").force(), &kube::api::Patch::Apply(&deep))
        .await
        .unwrap();
    // the operator says so on that object
    // (read as text: nothing decodes it, as the operator found)
    let url = format!("/apis/chainwatch.io/v1alpha1/namespaces/{evil}/monitors/deep");
    let status = eventually("Ready=False Undecodable on the deep Monitor", T, || async {
        let text = bed.client.request_text(http::Request::get(&url).body(Vec::new()).unwrap()).await.ok()?;
        let status = &text[text.find("\"status\":{\"conditions\"")?..];
        status.contains("\"reason\":\"Undecodable\"").then(|| status.to_string())
    })
    .await;
    assert!(status.contains("\"status\":\"False\"") && status.contains("recursion limit"), "{status}");

    // a worker (re)started now becomes ready, and the other tenant is still monitored
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;
    let tx = bed.transfer(1, 5000).await;
    eventually("the other tenant's notification", T, || async {
        bed.http.received().iter().any(|r| String::from_utf8_lossy(&r.body).contains(&tx)).then_some(())
    })
    .await;
    let malformed =
        worker.metric("chainwatch_worker_malformed_objects_total{kind=\"Monitor\"}").await.unwrap_or(0.0);
    assert!(malformed >= 1.0, "the worker counts the object it left out");
    // and the operator still admits monitors
    bed.monitor("after", "value > 1", &["hook"]).await;
    bed.admitted("after").await;
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_status_logs_and_dead_letters_and_redirects_are_refused() {
    let bed = Bed::start(&[]).await;
    // a Slack URL whose path is the secret, on a port nobody listens on (the request fails and
    // the HTTP client's error names the URL)
    let slack_secret = "T0SECRET/B0SECRET/XXXXSECRETXXXX";
    bed.apply(harness::secret(
        &bed.ns,
        "slack",
        "url",
        &format!("http://127.0.0.1:1/services/{slack_secret}"),
    ))
    .await;
    let token = "123456789:AAsecretsecretsecretsecretsecret12";
    bed.apply(harness::secret(&bed.ns, "tg", "token", token)).await;
    let retry = json!({"maxRetries": 0, "retryFor": "0s"}); // dead letters at once
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "slack", "namespace": bed.ns},
        "spec": {"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}, "message": {"title": "t", "body": "b"}, "retryPolicy": retry}})).await;
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "tg", "namespace": bed.ns},
        "spec": {"telegram": {"tokenSecretRef": {"name": "tg", "key": "token"}, "chatId": "1", "apiUrl": "http://127.0.0.1:1"}, "message": {"title": "t", "body": "b"}, "retryPolicy": retry}})).await;
    // a receiver on an allowed address that redirects to an internal one
    let internal = HttpReceiver::start_on("127.0.0.2").await;
    let redirector = HttpReceiver::start().await;
    redirector.redirect_to(&internal.url("/latest/meta-data"));
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "redirect", "namespace": bed.ns},
        "spec": {"webhook": {"url": redirector.url("/hook")}, "message": {"title": "t", "body": "b"}, "retryPolicy": retry}})).await;
    bed.monitor("large", "value > 1000", &["slack", "tg", "redirect"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;
    let tx = bed.transfer(1, 5000).await;

    let triggers: Api<Trigger> = Api::namespaced(bed.client.clone(), &bed.ns);
    for name in ["slack", "tg", "redirect"] {
        let t = eventually(&format!("Trigger {name} reports the failure"), T, || async {
            let t = get(&triggers, name).await;
            t.status.as_ref()?.last_error.is_some().then_some(t)
        })
        .await;
        let status = serde_json::to_string(&t.status).unwrap();
        assert!(
            !status.contains("SECRET") && !status.contains("AAsecret"),
            "{name}: a secret in status: {status}"
        );
        if name == "redirect" {
            assert!(status.contains("redirects to http://127.0.0.2"), "{status}");
        }
    }
    assert_eq!(internal.attempts(), 0, "the redirect target was reached");
    assert!(redirector.attempts() >= 1);
    let mut letters = Vec::new();
    chainwatch_devkit::testbed::read_topic(DEADLETTER_TOPIC, T, |raw| {
        let d = DeadLetterRecord::decode(&raw).unwrap();
        if d.payload.as_ref().is_some_and(|p| p.to_string().contains(&tx)) {
            letters.push(d);
        }
        letters.len() >= 3
    })
    .await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    for d in &letters {
        let text = serde_json::to_string(d).unwrap();
        assert!(!text.contains("SECRET") && !text.contains("AAsecret"), "a secret in a dead letter: {text}");
    }
    let log_path = worker.log.clone();
    worker.stop().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("SECRET") && !log.contains("AAsecret"), "a secret in the worker's log");
    ingester.stop().await;

    // an RPC endpoint with its key in the path, unreachable: the Network says so, without the key
    let leaky = unique("leaky");
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": leaky},
        "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1/v2/RPCSECRETKEY"}], "pollInterval": "100ms", "kafka": {"partitions": 1}}})).await;
    let mut ingester = Proc::spawn(
        "ingester",
        &[
            "ingester".into(),
            format!("--network={leaky}"),
            format!("--checkpoint-dir={}", bed.dir.path().display()),
            format!("--secrets-namespace={}", bed.operator_ns),
            "--status-interval=500ms".into(),
        ],
        bed.dir.path(),
    );
    let networks: Api<Network> = Api::all(bed.client.clone());
    let n = eventually("RpcReachable=False", T, || async {
        let n = get(&networks, &leaky).await;
        condition(&n, "RpcReachable").filter(|c| c.0 == "False").map(|_| n)
    })
    .await;
    let status = serde_json::to_string(&n.status).unwrap();
    assert!(!status.contains("RPCSECRETKEY") && !status.contains("/v2/"), "{status}");
    let metrics =
        reqwest::get(format!("http://{}/metrics", ingester.admin)).await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("RPCSECRETKEY"), "a key in a metric label");
    let log_path = ingester.log.clone();
    ingester.kill9().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("RPCSECRETKEY"), "the key in the ingester's log");
    bed.stop().await;
}

/// The operator, the ingester and the worker, each with only its own ServiceAccount's
/// permissions — `config/rbac` and what the operator grants — run a tenant's monitor end to end;
/// none of them may read a Secret outside tenant namespaces, and the operator may not delete a
/// ClusterRole it does not own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_part_works_with_its_own_service_account_and_no_more() {
    let admin = harness::clean_slate().await;
    let system = "chainwatch-system";
    harness::namespace(&admin, system).await;
    for f in ["operator.yaml", "worker.yaml", "ingester.yaml", "tenant.yaml"] {
        harness::apply_file(&admin, &harness::repo().join("config/rbac").join(f)).await;
    }
    let sa = |name: &str| kubeconfig_for(&format!("system:serviceaccount:{system}:{name}"), &[]);
    let dir = tempfile::Builder::new().prefix("chainwatch-rbac-").disable_cleanup(true).tempdir().unwrap();
    let op_kc = sa("chainwatch-operator");
    let mut operator = Proc::spawn_env(
        "operator",
        &[
            "operator".into(),
            format!("--namespace={system}"),
            "--image=chainwatch:test".into(),
            "--identity=op-rbac".into(),
            "--lease-seconds=6".into(),
            "--allow-destination=127.0.0.1/32".into(),
        ],
        dir.path(),
        &[("KUBECONFIG", op_kc.to_str().unwrap())],
    );
    operator.ready().await;

    // a tenant, its Secret and Trigger (an HMAC-signed webhook), a chain and a monitor
    let ns = unique("rbac-tenant");
    let anvil =
        chainwatch_devkit::devnet::Anvil::spawn(&chainwatch_devkit::testbed::anvil_bin(), &[]).await.unwrap();
    let accounts = anvil.accounts().await.unwrap();
    let token = anvil
        .deploy_token(
            accounts[0],
            alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(24u64)),
        )
        .await
        .unwrap();
    // short: the test API server's client certificates take names of 64 characters at most, and
    // the ingester's ServiceAccount is chainwatch-ingester-<network>
    let net = format!("r{}", chainwatch_platform::codec::now_ms() % 1000);
    chainwatch_platform::bus::kafka::KafkaArgs::new(chainwatch_devkit::testbed::kafka_bootstrap())
        .admin()
        .unwrap()
        .delete_topic(&chainwatch_platform::bus::blocks_topic(&net))
        .await
        .unwrap();
    let http = HttpReceiver::start().await;
    let apply = |v: Value| {
        let admin = admin.clone();
        async move { harness::apply_value(&admin, &v).await.unwrap_or_else(|e| panic!("applying {v}: {e}")) }
    };
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns}, "spec": {"namespaces": [ns], "limits": {"allowScripts": true}}})).await;
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "chainId": 31337, "rpc": [{"url": anvil.url}], "confirmations": 0, "pollInterval": "100ms", "startBlock": 1, "kafka": {"partitions": 1}}})).await;
    let tenants: Api<Tenant> = Api::all(admin.clone());
    eventually("the Tenant Ready (namespace and bindings made by the operator)", T, || async {
        condition(&get(&tenants, &ns).await, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    apply(harness::secret(&ns, "hmac", "key", "s3cret\n")).await;
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": ns},
        "spec": {"webhook": {"url": http.url("/hook"), "secretRef": {"name": "hmac", "key": "key"}}, "message": {"title": "t", "body": "${transaction.hash}"}}})).await;
    apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": "m", "namespace": ns}, "spec": {
        "networks": [net], "addresses": [{"address": format!("{token:#x}"), "contractSpec": serde_json::from_str::<Value>(TRANSFER_ABI).unwrap()}],
        "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 1000"}]}, "triggers": ["hook"]}})).await;
    let trigger_api: Api<Trigger> = Api::namespaced(admin.clone(), &ns);
    eventually("the Trigger Ready: the operator read its Secret", T, || async {
        condition(&get(&trigger_api, "hook").await, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let monitor_api: Api<Monitor> = Api::namespaced(admin.clone(), &ns);
    eventually("the Monitor admitted", T, || async {
        condition(&get(&monitor_api, "m").await, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let networks: Api<Network> = Api::all(admin.clone());
    eventually("the Network's topic", T, || async {
        condition(&get(&networks, &net).await, "TopicReady").filter(|c| c.0 == "True")
    })
    .await;
    assert!(
        Api::<StatefulSet>::namespaced(admin.clone(), system)
            .get_opt(&format!("chainwatch-ingester-{net}"))
            .await
            .unwrap()
            .is_some()
    );
    // the tenant's script runner: no token, no egress, in its namespace
    let runner = eventually("the script runner", T, || async {
        Api::<Deployment>::namespaced(admin.clone(), &ns).get_opt("chainwatch-script-runner").await.unwrap()
    })
    .await;
    assert_eq!(runner.spec.unwrap().template.spec.unwrap().automount_service_account_token, Some(false));
    let policy: NetworkPolicy = get(&Api::namespaced(admin.clone(), &ns), "chainwatch-script-runner").await;
    let policy = policy.spec.unwrap();
    assert!(
        policy.policy_types.unwrap().contains(&"Egress".to_string())
            && policy.egress.unwrap_or_default().is_empty(),
        "no egress"
    );

    // ingester and worker, each as its ServiceAccount
    let ing_kc = sa(&format!("chainwatch-ingester-{net}"));
    let mut ingester = Proc::spawn_env(
        "ingester",
        &[
            "ingester".into(),
            format!("--network={net}"),
            format!("--checkpoint-dir={}", dir.path().display()),
            format!("--secrets-namespace={system}"),
            "--status-interval=500ms".into(),
        ],
        dir.path(),
        &[("KUBECONFIG", ing_kc.to_str().unwrap())],
    );
    let wk_kc = sa("chainwatch-worker");
    let mut worker = Proc::spawn_env(
        "worker",
        &[
            "worker".into(),
            "--instance-id=system-w0".into(),
            format!("--network={net}"),
            "--allow-destination=127.0.0.1/32".into(),
            "--status-interval=500ms".into(),
        ],
        dir.path(),
        &[("KUBECONFIG", wk_kc.to_str().unwrap())],
    );
    ingester.ready().await;
    worker.ready().await;
    // each process says which build it runs: the one `chainwatch --version` names
    let version = std::process::Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!(
        "CARGO_BIN_EXE_chainwatch"
    )))
    .arg("--version")
    .output()
    .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let (release, commit) =
        version.trim().strip_prefix("chainwatch ").and_then(|v| v.split_once(" (commit ")).unwrap();
    let info =
        format!("chainwatch_build_info{{version=\"{release}\",commit=\"{}\"}}", commit.trim_end_matches(')'));
    for p in [&operator, &ingester, &worker] {
        assert_eq!(p.metric(&info).await, Some(1.0), "{info} on {}", p.name);
        assert!(p.metric("process_resident_memory_bytes").await.is_some_and(|b| b > 1e6), "{}", p.name);
    }
    let tx =
        anvil.transfer(token, accounts[0], accounts[1], alloy_primitives::U256::from(5000u64)).await.unwrap();
    let got = eventually("the notification", T, || async {
        http.received().into_iter().find(|r| String::from_utf8_lossy(&r.body).contains(&tx))
    })
    .await;
    // signed with the key the worker read from the tenant's namespace (trimmed, as admitted)
    let ts: u64 = got.header("X-Timestamp").unwrap().parse().unwrap();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&got.body);
    mac.update(ts.to_string().as_bytes());
    assert_eq!(got.header("X-Signature").unwrap(), hex::encode(mac.finalize().into_bytes()));
    // usage per tenant (chargeback): the Tenant is named after its namespace here
    for family in [
        "tenant_notifications_total{tenant=\"TENANT\",outcome=\"delivered\"}",
        "tenant_matches_total{tenant=\"TENANT\"}",
        "tenant_evaluations_total{tenant=\"TENANT\"}",
    ] {
        let sample = format!("chainwatch_worker_{}", family.replace("TENANT", &ns));
        eventually(&format!("{sample} counted"), T, || async {
            worker.metric(&sample).await.filter(|n| *n >= 1.0)
        })
        .await;
    }
    let none =
        format!("chainwatch_worker_tenant_notifications_total{{tenant=\"{ns}\",outcome=\"dead_lettered\"}}");
    assert_eq!(worker.metric(&none).await, Some(0.0), "{none}: present at zero");
    // every metric the shipped alerts and dashboard query is one these processes serve
    let mut exposed = std::collections::BTreeSet::new();
    for p in [&operator, &ingester, &worker] {
        exposed.extend(crate::bed::series_names(&p.metrics().await));
    }
    let unknown: Vec<_> =
        crate::bed::shipped_promql_names().into_iter().filter(|(name, _)| !exposed.contains(name)).collect();
    assert!(unknown.is_empty(), "config/monitoring queries metrics no process serves: {unknown:?}");
    eventually("the ingester writes its Network's status", T, || async {
        get(&networks, &net).await.status.and_then(|s| s.last_block).filter(|b| *b > 0)
    })
    .await;

    // and no more than that
    let outside = unique("not-a-tenant");
    harness::namespace(&admin, &outside).await;
    Api::<Secret>::namespaced(admin.clone(), &outside)
        .create(
            &PostParams::default(),
            &serde_json::from_value(harness::secret(&outside, "db", "password", "hunter2")).unwrap(),
        )
        .await
        .unwrap();
    for (who, kc) in [("operator", &op_kc), ("worker", &wk_kc), ("ingester", &ing_kc)] {
        let c = client_of(kc).await;
        for ns in [outside.as_str(), "default"] {
            let denied = Api::<Secret>::namespaced(c.clone(), ns).list(&ListParams::default()).await;
            assert!(
                matches!(denied, Err(kube::Error::Api(ref e)) if e.code == 403),
                "{who} listed Secrets of {ns}: {denied:?}"
            );
            let denied = Api::<Secret>::namespaced(c.clone(), &outside).get("db").await;
            assert!(
                matches!(denied, Err(kube::Error::Api(ref e)) if e.code == 403),
                "{who} read a Secret of {outside}"
            );
        }
        let all = Api::<Secret>::all(c.clone()).list(&ListParams::default()).await;
        assert!(matches!(all, Err(kube::Error::Api(ref e)) if e.code == 403), "{who} listed every Secret");
    }
    let victim: ClusterRole = serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": unique("victim")}, "rules": []})).unwrap();
    let victim =
        Api::<ClusterRole>::all(admin.clone()).create(&PostParams::default(), &victim).await.unwrap();
    let op = client_of(&op_kc).await;
    let denied = Api::<ClusterRole>::all(op.clone())
        .delete(victim.metadata.name.as_deref().unwrap(), &DeleteParams::default())
        .await;
    assert!(
        matches!(denied, Err(kube::Error::Api(ref e)) if e.code == 403),
        "the operator deleted a ClusterRole: {denied:?}"
    );
    let denied = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(op)
        .delete("chainwatch-operator", &DeleteParams::default())
        .await;
    assert!(
        matches!(denied, Err(kube::Error::Api(ref e)) if e.code == 403),
        "the operator deleted a ClusterRoleBinding"
    );

    worker.stop().await;
    ingester.stop().await;
    operator.stop().await;
    harness::reset(&admin).await;
}

/// A tenant's `notificationsPerMinute` holds across worker replicas: its matches are keyed by
/// tenant, so one worker owns them all and counts them all — however many of its monitors match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rate_limit_holds_across_two_workers() {
    // four monitors, their keys (namespace/monitor) spread over both workers
    let bed = limited_tenant().await;
    let mut ingester = bed.ingester();
    let (mut w0, mut w1) = (bed.worker("w0"), bed.dynamic_worker());
    ingester.ready().await;
    w0.ready().await;
    w1.ready().await;
    // the notify group settled: its 24 partitions (matches and deferred) split between both
    let assigned = "chainwatch_worker_assigned_partitions{group=\"chainwatch-notify\"}";
    eventually("both workers share the notify group", T, || async {
        let (a, b) = (w0.metric(assigned).await?, w1.metric(assigned).await?);
        (a + b == 24.0 && a > 0.0 && b > 0.0).then_some(())
    })
    .await;
    for _ in 0..5 {
        bed.transfer(1, 5000).await;
    }
    // 20 matches: 6 notified, 14 throttled
    assert_eq!(throttled_of(&bed, 14).await, 14, "14 of 20 throttled");
    assert_eq!(bed.http.received().len(), 6, "the tenant's limit of 6 per minute, across both workers");
    w1.stop().await;
    w0.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

/// A tenant allowed 6 notifications per minute, with four monitors that each match a transfer
/// above 1,000 and notify one webhook.
async fn limited_tenant() -> Bed {
    let bed = Bed::start(&[]).await;
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": bed.ns}, "spec": {"namespaces": [bed.ns], "limits": {"notificationsPerMinute": 6}}})).await;
    bed.webhook("hook", "/hook").await;
    for i in 0..4 {
        bed.monitor(&format!("m{i}"), "value > 1000", &["hook"]).await;
        bed.admitted(&format!("m{i}")).await;
    }
    bed
}

/// The tenant's throttled notifications in the dead letters, read until `want` are seen.
async fn throttled_of(bed: &Bed, want: usize) -> usize {
    let mut throttled = 0;
    chainwatch_devkit::testbed::read_topic(DEADLETTER_TOPIC, T, |raw| {
        let d = DeadLetterRecord::decode(&raw).unwrap();
        if d.monitor.as_deref().is_some_and(|m| m.starts_with(&format!("{}/", bed.ns)))
            && d.reason.starts_with("throttled")
        {
            throttled += 1;
        }
        throttled >= want
    })
    .await;
    throttled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rate_limit_holds_when_another_worker_takes_over() {
    let bed = limited_tenant().await;
    let mut ingester = bed.ingester();
    let mut first = bed.worker("w0");
    ingester.ready().await;
    first.ready().await;
    // 12 matches on the first worker: 6 sent, 6 throttled
    for _ in 0..3 {
        bed.transfer(1, 5000).await;
    }
    assert_eq!(throttled_of(&bed, 6).await, 6);
    assert_eq!(bed.http.received().len(), 6);
    // a new process takes the tenant's partitions over, with nothing in memory; within the
    // minute, what the first one sent still counts: 8 more matches, all throttled
    first.stop().await;
    let mut second = bed.worker("w0");
    second.ready().await;
    for _ in 0..2 {
        bed.transfer(1, 5000).await;
    }
    assert_eq!(throttled_of(&bed, 14).await, 14, "6 then 8 throttled");
    assert_eq!(bed.http.received().len(), 6, "the limit holds across the takeover");
    second.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

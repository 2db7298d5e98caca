//! One test's system: the API server objects, a chain, the operator in-process, the ingester and
//! worker as processes, and the receivers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use chainwatch_crds::{Monitor, Network};
use chainwatch_devkit::devnet::Anvil;
use chainwatch_devkit::receivers::{HttpReceiver, SmtpReceiver};
use chainwatch_devkit::testbed::{free_port, kafka_bootstrap, unique};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{self, Operator, condition, eventually, get};

pub const T: Duration = Duration::from_secs(60);

/// A `chainwatch` subprocess, killed when dropped; its output goes to a log file.
pub struct Proc {
    pub child: tokio::process::Child,
    pub name: String,
    pub log: PathBuf,
    pub admin: String,
}

/// A process still running when its test ends (the test failed before `stop`) is stopped
/// gracefully, so it leaves its consumer groups and the next test gets every partition.
impl Drop for Proc {
    fn drop(&mut self) {
        let Ok(None) = self.child.try_wait() else { return };
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // kill_on_drop sends SIGKILL
    }
}

impl Proc {
    pub fn spawn(name: &str, args: &[String], dir: &std::path::Path) -> Proc {
        Self::spawn_env(name, args, dir, &[])
    }

    /// With extra environment variables (a kubeconfig of its own, say).
    pub fn spawn_env(name: &str, args: &[String], dir: &std::path::Path, env: &[(&str, &str)]) -> Proc {
        let port = free_port();
        let log = dir.join(format!("{name}-{}.log", unique("run")));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!(
            "CARGO_BIN_EXE_chainwatch"
        )))
        .args(args)
        .arg(format!("--admin-addr=127.0.0.1:{port}"))
        .args(
            (!args.iter().any(|a| a.starts_with("--kafka-bootstrap=")))
                .then(|| format!("--kafka-bootstrap={}", kafka_bootstrap())),
        )
        .env("CHAINWATCH_LOG", "info,kube=warn,rdkafka=warn")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .expect("starting chainwatch");
        Proc { child, name: name.into(), log, admin: format!("127.0.0.1:{port}") }
    }

    /// SIGTERM, then waits for the process to drain and exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("a running process");
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => assert!(
                status.success(),
                "{} exited with {status} after SIGTERM:\n{}",
                self.name,
                self.tail()
            ),
            _ => panic!("{} did not stop within 30 s of SIGTERM:\n{}", self.name, self.tail()),
        }
    }

    /// SIGKILL: no drain, no checkpoint save, no commit.
    pub async fn kill9(&mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// What /metrics serves now (empty when it does not answer).
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.admin)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of a metric sample (`name{labels}` as exposed), if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
    }

    /// Whether /readyz answers 200 now.
    pub async fn is_ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin);
        reqwest::get(&url).await.is_ok_and(|r| r.status().is_success())
    }

    /// Waits until /readyz answers 200.
    pub async fn ready(&mut self) {
        let url = format!("http://{}/readyz", self.admin);
        let name = self.name.clone();
        let deadline = Instant::now() + T;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", self.tail());
            }
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} not ready within {T:?}:\n{}", self.tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The series names a scrape offers a query: each sample's, and each family's as Prometheus
/// names its series (a counter `_total`, a histogram `_bucket`/`_sum`/`_count`) even before its
/// first sample.
pub fn series_names(exposition: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut parts = t.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The metric names the shipped PromQL uses: the PrometheusRule's expressions and the Grafana
/// dashboard's queries (`config/monitoring`), with where each is used.
pub fn shipped_promql_names() -> Vec<(String, String)> {
    let dir = harness::repo().join("config/monitoring");
    let mut queries: Vec<(String, String)> = Vec::new();
    for doc in harness::documents(&std::fs::read_to_string(dir.join("prometheus-rule.yaml")).unwrap()) {
        for group in doc["spec"]["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                queries.push((format!("alert {}", rule["alert"]), rule["expr"].as_str().unwrap().into()));
            }
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            queries.push((format!("panel {}", panel["title"]), t["expr"].as_str().unwrap().into()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            queries.push((format!("variable {}", v["name"]), v["query"].as_str().unwrap().into()));
        }
    }
    assert!(queries.len() > 10, "the shipped queries were found");
    let mut names = Vec::new();
    for (place, q) in queries {
        let bytes = q.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
            if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
                let start = i;
                while i < bytes.len() && word(bytes[i]) {
                    i += 1;
                }
                let token = &q[start..i];
                if token.starts_with("chainwatch_") || token.starts_with("process_") {
                    names.push((token.to_string(), place.clone()));
                }
            } else {
                i += 1;
            }
        }
    }
    names
}

/// A client with a kubeconfig of its own (a ServiceAccount's, say).
pub async fn client_of(kubeconfig: &std::path::Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// The parts of one test.
pub struct Bed {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub operator: Option<Operator>,
    pub operator_ns: String,
    pub ns: String,
    pub network: String,
    pub anvil: Anvil,
    pub accounts: Vec<Address>,
    pub token: Address,
    pub http: HttpReceiver,
    pub smtp: SmtpReceiver,
}

/// Every transfer, not the mint of the token's deployment.
pub const EVERY_TRANSFER: &str = "from != 0x0000000000000000000000000000000000000000";

pub const TRANSFER_ABI: &str = r#"[{"type": "event", "name": "Transfer", "anonymous": false, "inputs": [{"indexed": true, "name": "from", "type": "address"}, {"indexed": true, "name": "to", "type": "address"}, {"indexed": false, "name": "value", "type": "uint256"}]}]"#;

impl Bed {
    /// API server with CRDs and a clean slate, the operator, a fresh anvil with the DUSD token,
    /// a Tenant, a Network on the chain (from block 1), and the receivers.
    pub async fn start(anvil_args: &[&str]) -> Bed {
        let client = harness::clean_slate().await;
        let operator_ns = harness::new_namespace(&client, "cw-sys").await;
        let ns = harness::new_namespace(&client, "tenant").await;
        let operator = Operator::start(&operator_ns, "op", &[]).await;
        let anvil = Anvil::spawn(&chainwatch_devkit::testbed::anvil_bin(), anvil_args).await.unwrap();
        let accounts = anvil.accounts().await.unwrap();
        let token = anvil.deploy_token(accounts[0], U256::from(10u64).pow(U256::from(24u64))).await.unwrap();
        let network = unique("chain");
        eprintln!("system test: network {network}");
        let bed = Bed {
            client,
            // kept after the test: the processes' logs are what explains a failure
            dir: tempfile::Builder::new()
                .prefix("chainwatch-system-")
                .disable_cleanup(true)
                .tempdir()
                .unwrap(),
            operator: Some(operator),
            operator_ns,
            ns,
            network,
            anvil,
            accounts,
            token,
            http: HttpReceiver::start().await,
            smtp: SmtpReceiver::start().await,
        };
        bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": bed.ns}, "spec": {"namespaces": [bed.ns], "limits": {"notificationsPerMinute": 100000}}})).await;
        bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": bed.network},
            "spec": {"type": "evm", "chainId": 31337, "rpc": [{"url": bed.anvil.url}], "confirmations": 0, "blockTime": "1s", "pollInterval": "100ms", "startBlock": 1, "kafka": {"partitions": 1, "deletionPolicy": "Delete"}}})).await;
        let networks: Api<Network> = Api::all(bed.client.clone());
        eventually("the block topic", T, || async {
            condition(&get(&networks, &bed.network).await, "TopicReady").filter(|c| c.0 == "True")
        })
        .await;
        bed
    }

    pub async fn apply(&self, v: Value) {
        harness::apply_value(&self.client, &v).await.unwrap_or_else(|e| panic!("applying {v}: {e}"));
    }

    /// A webhook Trigger to the HTTP receiver at `path`, with a body naming the transaction.
    pub async fn webhook(&self, name: &str, path: &str) {
        self.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name, "namespace": self.ns},
            "spec": {"webhook": {"url": self.http.url(path)}, "message": {"title": "${monitor.name}", "body": "${transaction.hash} ${events.0.args.value}"},
                     "retryPolicy": {"initialBackoff": "50ms", "maxBackoff": "200ms"}}})).await;
    }

    /// A Monitor on the token's Transfer events with `expression`.
    pub async fn monitor(&self, name: &str, expression: &str, triggers: &[&str]) {
        self.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Monitor", "metadata": {"name": name, "namespace": self.ns}, "spec": {
            "displayName": format!("{name} test"),
            "networks": [self.network],
            "addresses": [{"address": format!("{:#x}", self.token), "contractSpec": serde_json::from_str::<Value>(TRANSFER_ABI).unwrap()}],
            "matchConditions": {"events": [{"signature": "Transfer(address,address,uint256)", "expression": expression}]},
            "triggers": triggers,
        }})).await;
    }

    /// The usual pipeline: Monitor `name` on the token's transfers with `expression` notifying
    /// Trigger `hook`, admitted; then an ingester and the worker `w0`, both ready.
    pub async fn pipeline(&self, name: &str, expression: &str) -> (Proc, Proc) {
        self.monitor(name, expression, &["hook"]).await;
        self.admitted(name).await;
        let mut ingester = self.ingester();
        let mut worker = self.worker("w0");
        ingester.ready().await;
        worker.ready().await;
        (ingester, worker)
    }

    /// Waits until the operator admitted the monitor's current generation; returns it.
    pub async fn admitted(&self, name: &str) -> i64 {
        let api: Api<Monitor> = Api::namespaced(self.client.clone(), &self.ns);
        eventually(&format!("Monitor {name} admitted"), T, || async {
            let m = get(&api, name).await;
            let ok = condition(&m, "Ready").is_some_and(|c| c.0 == "True")
                && m.status.as_ref()?.observed_generation == m.metadata.generation;
            ok.then(|| m.metadata.generation.unwrap_or(0))
        })
        .await
    }

    pub fn ingester(&self) -> Proc {
        self.ingester_with(&[])
    }

    /// With more arguments (`--kafka-bootstrap=…` replaces the test bed's broker).
    pub fn ingester_with(&self, extra: &[String]) -> Proc {
        let mut args = vec![
            "ingester".into(),
            format!("--network={}", self.network),
            format!("--checkpoint-dir={}", self.dir.path().display()),
            format!("--secrets-namespace={}", self.operator_ns),
            "--status-interval=500ms".into(),
        ];
        args.extend_from_slice(extra);
        Proc::spawn("ingester", &args, self.dir.path())
    }

    /// A worker; `instance` is its static group identity (the pod name in a cluster). The same
    /// identity across tests: a new test's worker takes over the notify group's membership at
    /// once, as a restarted pod does.
    pub fn worker(&self, instance: &str) -> Proc {
        self.worker_with(Some(instance), &[])
    }

    /// A worker without a static identity: a dynamic group member, which leaves its groups when
    /// it stops (a second replica in a test: a static member that is not started again would keep
    /// its partitions on the test broker).
    pub fn dynamic_worker(&self) -> Proc {
        self.worker_with(None, &[])
    }

    /// A worker with a static identity (or none) and more arguments (`--flag=value` in `extra`
    /// replaces the test bed's value of the flag).
    pub fn worker_with(&self, instance: Option<&str>, extra: &[String]) -> Proc {
        let identity = instance.map(|i| format!("--instance-id=system-{i}"));
        let mut args: Vec<String> = vec![
            identity.unwrap_or_else(|| "--notify=true".into()),
            format!("--network={}", self.network),
            "--allow-destination=127.0.0.1/32".into(),
            "--status-interval=500ms".into(),
        ];
        let flag = |a: &str| a.split_once('=').map(|(f, _)| f.to_string());
        let replaced: Vec<String> = extra.iter().filter_map(|a| flag(a)).collect();
        args.retain(|a| flag(a).is_none_or(|f| !replaced.contains(&f)));
        args.insert(0, "worker".into());
        args.extend_from_slice(extra);
        Proc::spawn("worker", &args, self.dir.path())
    }

    /// Sends `token.transfer(to, units)` from the first account; returns the transaction hash.
    pub async fn transfer(&self, to: usize, units: u64) -> String {
        self.anvil.transfer(self.token, self.accounts[0], self.accounts[to], U256::from(units)).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
        harness::reset(&self.client).await;
    }
}

/// p50 and p99 of durations in milliseconds.
pub fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), *v.last().unwrap())
}

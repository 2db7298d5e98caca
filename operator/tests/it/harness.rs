//! The test bed of the operator tests: the kube-testenv API server (no controllers run there, so
//! what we read back is exactly what the operator wrote; it enforces RBAC for every identity but
//! the admin), the CRDs, a stand-in CRD for KEDA, and operator instances run in-process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chainwatch_crds::{Monitor, Network, Tenant, Trigger};
use chainwatch_operator::OperatorArgs;
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub fn repo() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub async fn client() -> Client {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,chainwatch_operator=info".into()),
        )
        .with_test_writer()
        .try_init();
    if std::env::var("KUBECONFIG").is_err() {
        panic!(
            "KUBECONFIG is not set: start kube-testenv with `scripts/testbed.sh up` and `source <(scripts/testbed.sh env)`, or run `just test`"
        );
    }
    Client::try_default().await.expect("a client for the API server in KUBECONFIG")
}

/// Polls `f` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The documents of a YAML stream.
pub fn documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// The API of an object's kind (found by discovery), in its namespace.
async fn api_for(client: &Client, value: &serde_json::Value) -> Result<Api<DynamicObject>, kube::Error> {
    let (group, version) = match value["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), value["apiVersion"].as_str().unwrap().to_string()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, value["kind"].as_str().unwrap());
    let (ar, caps) = discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            value["metadata"]["namespace"].as_str().unwrap_or("default"),
            &ar,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    Ok(api)
}

/// Creates one object of any kind (what `kubectl apply` does for a new object).
pub async fn create_value(client: &Client, value: &serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
    api_for(client, value).await?.create(&PostParams::default(), &obj).await
}

/// Server-side applies one object of any kind (field manager `kubectl`, like a user would).
pub async fn apply_value(client: &Client, value: &serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, value).await?;
    let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
    api.patch(&obj.name_any(), &PatchParams::apply("kubectl").force(), &Patch::Apply(&obj)).await
}

/// The manifests `kubectl kustomize` renders from a directory of the repository.
pub fn kustomize(dir: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &repo().join(dir).to_string_lossy()])
        .output()
        .expect("kubectl (scripts/testbed.sh installs it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    documents(&String::from_utf8(out.stdout).unwrap())
}

pub async fn apply_file(client: &Client, path: &Path) {
    for doc in documents(&std::fs::read_to_string(path).unwrap()) {
        apply_value(client, &doc).await.unwrap_or_else(|e| {
            panic!("{}: applying {} {}: {e}", path.display(), doc["kind"], doc["metadata"]["name"])
        });
    }
}

/// A stand-in CRD for a kind of an API group kube-testenv does not serve (KEDA), schemaless:
/// the operator writes real objects of those kinds and the tests read them back.
fn stand_in(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "annotations": {"api-approved.kubernetes.io": "unapproved, test stand-in"}},
        "spec": {
            "group": group, "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

pub fn keda_crd() -> serde_json::Value {
    stand_in("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", true)
}

/// Installs (server-side applies) the chainwatch CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let mut crds: Vec<serde_json::Value> = Vec::new();
    for entry in std::fs::read_dir(repo().join("config/crd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            crds.extend(documents(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    install(client, &crds).await;
}

/// Applies CRDs and waits for them to be Established.
pub async fn install(client: &Client, crds: &[serde_json::Value]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let obj: CustomResourceDefinition = serde_json::from_value(crd.clone()).unwrap();
        api.patch(&name, &PatchParams::apply("chainwatch-tests").force(), &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
        eventually(&format!("CRD {name} established"), Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let c = api.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

pub async fn uninstall(client: &Client, name: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    eventually(&format!("CRD {name} gone"), Duration::from_secs(30), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

async fn delete_all<K>(client: &Client)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let ar = kube::core::ApiResource::erase::<K>(&());
    // listed guarded: an object a test made undecodable must not keep the others alive
    let Ok(list) =
        Api::<chainwatch_platform::cache::Guarded<K>>::all(client.clone()).list(&ListParams::default()).await
    else {
        return;
    };
    for o in list.items {
        let name = o.name_any();
        let api = match o.namespace() {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        if !o.finalizers().is_empty() {
            let _ = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
}

/// Deletes every chainwatch object (finalizers stripped): the tests run one at a time against one
/// API server (see `.config/nextest.toml`), each from a clean slate.
pub async fn reset(client: &Client) {
    delete_all::<Monitor>(client).await;
    delete_all::<Trigger>(client).await;
    delete_all::<Network>(client).await;
    delete_all::<Tenant>(client).await;
    // KEDA is "installed" only by the test about it
    if Api::<CustomResourceDefinition>::all(client.clone()).get_opt(KEDA_CRD).await.ok().flatten().is_some() {
        uninstall(client, KEDA_CRD).await;
    }
}

pub const KEDA_CRD: &str = "scaledobjects.keda.sh";

/// A client on a clean slate: the CRDs installed, every chainwatch object deleted.
pub async fn clean_slate() -> Client {
    let client = client().await;
    install_crds(&client).await;
    reset(&client).await;
    client
}

/// Creates a namespace with a name unique to this run (`prefix-…`) and returns the name.
pub async fn new_namespace(client: &Client, prefix: &str) -> String {
    let name = chainwatch_devkit::testbed::unique(prefix);
    namespace(client, &name).await;
    name
}

/// Creates a namespace (fine if it exists).
pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    operator: OperatorArgs,
}

/// An operator running in this process.
pub struct Operator {
    pub admin: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], chainwatch_devkit::testbed::free_port()))
}

impl Operator {
    /// Starts an operator whose pipelines live in `namespace`, with extra arguments. Its image is
    /// `chainwatch:test`, unless `extra` has `--image-from-pod` (then it reads its own Pod's).
    pub async fn start(namespace: &str, identity: &str, extra: &[&str]) -> Operator {
        let admin = free_port();
        let kafka = chainwatch_devkit::testbed::kafka_bootstrap();
        let mut argv = vec!["operator".to_string(), format!("--namespace={namespace}")];
        if !extra.iter().any(|a| a.starts_with("--kafka-bootstrap=")) {
            argv.push(format!("--kafka-bootstrap={kafka}"));
        }
        argv.extend([
            format!("--admin-addr={admin}"),
            format!("--identity={identity}"),
            "--lease-seconds=6".into(),
        ]);
        if !extra.contains(&"--image-from-pod") {
            argv.push("--image=chainwatch:test".into());
        }
        argv.extend(extra.iter().filter(|a| **a != "--image-from-pod").map(|s| s.to_string()));
        let args = Args::try_parse_from(argv).expect("operator arguments").operator;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { chainwatch_operator::run(args, stop).await.expect("the operator runs") }
        });
        Operator { admin, stop, task }
    }

    /// The operator's metrics text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.admin);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of one metric sample (`name{labels}`), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// SIGTERM-like stop: drains and returns when the operator has stopped.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops within 30 s")
            .unwrap();
    }
}

/// Reads an object, failing the test if it does not exist.
pub async fn get<K>(api: &Api<K>, name: &str) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get(name).await.unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The status of a condition of a chainwatch object (its JSON).
pub fn condition(obj: &impl serde::Serialize, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    let c = v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

/// A Secret manifest with one key. (`data`, not `stringData`: kube-testenv stores `stringData` as
/// given instead of merging it into `data` like a full API server.)
pub fn secret(namespace: &str, name: &str, key: &str, value: &str) -> serde_json::Value {
    let s = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(std::collections::BTreeMap::from([(
            key.to_string(),
            k8s_openapi::ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    serde_json::to_value(s).unwrap()
}

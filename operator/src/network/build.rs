//! The objects a Network becomes, as pure functions of the Network and the operator's settings:
//! the ingester StatefulSet (one replica, a volume for its checkpoint) with its Service,
//! ServiceAccount and least-privilege RBAC, the worker Deployment, and its autoscaler (an
//! autoscaling/v2 HPA on CPU, or a KEDA ScaledObject on consumer lag). Disruption budgets and
//! network policies are in [`super::policies`].

use std::collections::BTreeMap;

use chainwatch_crds::Network;
use chainwatch_crds::network::{AutoscalingMode, Workers};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::labels;

/// What the operator passes on to the pods it creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    /// The image every chainwatch binary runs from (the operator's own).
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// Namespace of the children (the operator's).
    pub namespace: String,
    pub kafka_bootstrap: String,
    /// Extra librdkafka options for the children, `key=value` comma-separated.
    pub kafka_options: Option<String>,
    /// Allowlisted internal destinations for workers (comma-separated CIDRs).
    pub allow_destinations: Option<String>,
    /// ServiceAccount of the workers (shared, from the install manifests).
    pub worker_service_account: String,
    /// Ports the API server is reached on from pods (NetworkPolicies allow them).
    pub api_server_ports: Vec<u16>,
    /// The Secret (in `namespace`) with the Kafka credentials, mounted into every pod.
    pub kafka_secret: Option<KafkaSecret>,
    /// The resourceVersion of the ConfigMap the Kafka settings came from, if they did: written
    /// into the pod templates beside the settings, so that what rolled the pods is visible.
    pub kafka_settings_version: Option<String>,
    /// The namespaces a namespace-scoped install watches (`a,b`; `None`: every namespace): the
    /// workers watch the same.
    pub watch_namespaces: Option<String>,
}

/// The Secret with the Kafka credentials (SASL, TLS certificates: `credentials` in the platform
/// crate says which keys count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSecret {
    pub name: String,
    /// Its resourceVersion when last read: written into the pod templates, so a changed Secret
    /// rolls the pods (their clients read the credentials when they start).
    pub version: Option<String>,
}

/// Where the Kafka credentials Secret is mounted.
pub const KAFKA_CREDENTIALS_DIR: &str = "/etc/chainwatch/kafka";
/// The pod template annotation that carries [`KafkaSecret::version`].
pub const KAFKA_CREDENTIALS_VERSION: &str = "chainwatch.io/kafka-credentials-version";
/// The pod template annotation that carries [`PodSettings::kafka_settings_version`].
pub const KAFKA_SETTINGS_VERSION: &str = "chainwatch.io/kafka-settings-version";

fn annotate(template: &mut PodTemplateSpec, key: &str, value: &str) {
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
}

/// The Kafka settings' version, and the credentials Secret, if any, mounted into a pod template's
/// chainwatch container: read only, readable by the pod's group only, never copied into the spec.
fn kafka_template(template: &mut PodTemplateSpec, s: &PodSettings) {
    if let Some(version) = &s.kafka_settings_version {
        annotate(template, KAFKA_SETTINGS_VERSION, version);
    }
    let Some(secret) = &s.kafka_secret else { return };
    let Some(pod) = template.spec.as_mut() else { return };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "kafka-credentials".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.name.clone()),
            default_mode: Some(0o440),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    });
    for c in &mut pod.containers {
        c.env.get_or_insert_with(Vec::new).push(env("KAFKA_CREDENTIALS_DIR", KAFKA_CREDENTIALS_DIR));
        c.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
            name: "kafka-credentials".into(),
            mount_path: KAFKA_CREDENTIALS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(version) = &secret.version {
        annotate(template, KAFKA_CREDENTIALS_VERSION, version);
    }
}

/// Defaults of the worker scaling.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
pub const DEFAULT_MAX_REPLICAS: i32 = 4;
pub const DEFAULT_CPU_TARGET: i32 = 70;
pub const DEFAULT_LAG_THRESHOLD: i64 = 20;
pub(crate) const ADMIN_PORT: i32 = 8080;

pub fn ingester_name(network: &str) -> String {
    format!("chainwatch-ingester-{network}")
}

pub fn worker_name(network: &str) -> String {
    format!("chainwatch-worker-{network}")
}

fn owner(network: &Network) -> OwnerReference {
    network.controller_owner_ref(&()).expect("a Network read from the API server has a name and uid")
}

pub(crate) fn meta(network: &Network, name: &str, namespace: Option<&str>, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels::child(&network.name_any(), component)),
        owner_references: Some(vec![owner(network)]),
        ..Default::default()
    }
}

pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

pub(crate) fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

pub(crate) fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    }
}

pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    }
}

pub(crate) fn resources(
    spec: Option<&ResourceRequirements>,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    spec.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity(memory_limit.into()))])),
        ..Default::default()
    })
}

/// A chainwatch container: `chainwatch <command>` from the operator's image, the admin port with
/// its probes, the restricted security context, and one volume mount.
fn container(
    s: &PodSettings,
    command: &str,
    vars: Vec<EnvVar>,
    resources: ResourceRequirements,
    mount: (&str, &str),
) -> Container {
    Container {
        name: command.into(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.clone(),
        args: Some(vec![command.into()]),
        env: Some(vars),
        ports: Some(vec![ContainerPort {
            name: Some("admin".into()),
            container_port: ADMIN_PORT,
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/livez", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(resources),
        security_context: Some(restricted()),
        volume_mounts: Some(vec![VolumeMount {
            name: mount.0.into(),
            mount_path: mount.1.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn common_env(s: &PodSettings) -> Vec<EnvVar> {
    let mut e = vec![env("KAFKA_BOOTSTRAP", &s.kafka_bootstrap), env("CHAINWATCH_LOG_FORMAT", "json")];
    if let Some(o) = &s.kafka_options {
        e.push(env("KAFKA_OPTIONS", o));
    }
    e
}

/// The ingester's ServiceAccount.
pub fn ingester_service_account(network: &Network, s: &PodSettings) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(network, &ingester_name(&network.name_any()), Some(&s.namespace), labels::INGESTER),
        ..Default::default()
    }
}

/// The ClusterRole every ingester is bound to (installed by `config/rbac`): read Networks and
/// write their status, nothing else.
pub const INGESTER_ROLE: &str = "chainwatch-ingester";
/// The one ClusterRoleBinding of every ingester's ServiceAccount to [`INGESTER_ROLE`] (installed by
/// `config/rbac`; the operator keeps its subjects). One binding with a fixed name, so the operator
/// may change exactly that ClusterRoleBinding and create or delete none.
pub const INGESTER_BINDING: &str = "chainwatch-ingester";

fn subject(network: &Network, s: &PodSettings) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: ingester_name(&network.name_any()),
        namespace: Some(s.namespace.clone()),
        api_group: None,
    }
}

/// [`INGESTER_BINDING`] with the ServiceAccounts of the ingesters of `networks` (those not being
/// deleted), sorted.
pub fn ingester_binding(networks: &[std::sync::Arc<Network>], s: &PodSettings) -> ClusterRoleBinding {
    let mut subjects: Vec<Subject> =
        networks.iter().filter(|n| n.metadata.deletion_timestamp.is_none()).map(|n| subject(n, s)).collect();
    subjects.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(INGESTER_BINDING.into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: INGESTER_ROLE.into(),
        },
        subjects: Some(subjects),
    }
}

/// Secrets holding the Network's endpoint URLs, which the ingester may read (and no others).
pub fn ingester_secret_names(network: &Network) -> Vec<String> {
    let mut names: Vec<String> =
        network.spec.rpc.iter().filter_map(|e| e.url_secret_ref.as_ref().map(|r| r.name.clone())).collect();
    names.sort();
    names.dedup();
    names
}

pub fn ingester_role(network: &Network, s: &PodSettings) -> Option<Role> {
    let secrets = ingester_secret_names(network);
    (!secrets.is_empty()).then(|| Role {
        metadata: meta(network, &ingester_name(&network.name_any()), Some(&s.namespace), labels::INGESTER),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(secrets),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    })
}

pub fn ingester_role_binding(network: &Network, s: &PodSettings) -> Option<RoleBinding> {
    ingester_role(network, s).map(|role| RoleBinding {
        metadata: meta(network, &ingester_name(&network.name_any()), Some(&s.namespace), labels::INGESTER),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.name_any(),
        },
        subjects: Some(vec![subject(network, s)]),
    })
}

/// The ingester: one replica with a stable identity and a volume for its checkpoint.
pub fn ingester_statefulset(network: &Network, s: &PodSettings) -> StatefulSet {
    let name = ingester_name(&network.name_any());
    let net = network.name_any();
    let spec_ingester = network.spec.ingester.clone().unwrap_or_default();
    let selector = labels::selector(&net, labels::INGESTER);
    let mut vars = common_env(s);
    vars.extend([
        env("CHAINWATCH_NETWORK", &net),
        env("CHAINWATCH_CHECKPOINT_DIR", "/var/lib/chainwatch"),
        env("CHAINWATCH_SECRETS_NAMESPACE", &s.namespace),
    ]);
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::child(&net, labels::INGESTER)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(name.clone()),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(60),
            containers: vec![container(
                s,
                "ingester",
                vars,
                resources(spec_ingester.resources.as_ref(), "100m", "128Mi", "512Mi"),
                ("checkpoint", "/var/lib/chainwatch"),
            )],
            ..Default::default()
        }),
    };
    kafka_template(&mut template, s);
    StatefulSet {
        metadata: meta(network, &name, Some(&s.namespace), labels::INGESTER),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector { match_labels: Some(selector.clone()), ..Default::default() },
            template,
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("checkpoint".into()),
                    labels: Some(labels::child(&net, labels::INGESTER)),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec_ingester.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(spec_ingester.storage_size.clone().unwrap_or_else(|| "64Mi".into())),
                        )])),
                        limits: None,
                    }),
                    ..Default::default()
                }),
                // the API server stores an empty status here; sending it too keeps a repeated
                // server-side apply a no-op (otherwise every apply rewrites the StatefulSet)
                status: Some(Default::default()),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The metrics Service of a Network's ingester or workers (`component`): what a ServiceMonitor
/// scrapes (`config/monitoring`), one endpoint per pod; the ingester's is also its StatefulSet's
/// governing Service.
pub fn metrics_service(network: &Network, s: &PodSettings, component: &str) -> Service {
    let net = network.name_any();
    let name = if component == labels::WORKER { worker_name(&net) } else { ingester_name(&net) };
    Service {
        metadata: meta(network, &name, Some(&s.namespace), component),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector(&net, component)),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: ADMIN_PORT,
                target_port: Some(IntOrString::String("admin".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Effective worker replica bounds: `maxReplicas` never above the topic's partitions.
pub fn worker_bounds(workers: &Workers, partitions: i32) -> (i32, i32) {
    let max = workers.max_replicas.unwrap_or(DEFAULT_MAX_REPLICAS).min(partitions.max(1));
    let min = workers.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS).min(max);
    (min, max)
}

/// Which autoscaler a Network gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaler {
    Hpa,
    Keda,
    None,
}

pub fn scaler(mode: AutoscalingMode, keda_installed: bool) -> Scaler {
    match mode {
        AutoscalingMode::Auto if keda_installed => Scaler::Keda,
        AutoscalingMode::Auto | AutoscalingMode::Cpu => Scaler::Hpa,
        AutoscalingMode::KafkaLag if keda_installed => Scaler::Keda,
        AutoscalingMode::KafkaLag => Scaler::Hpa, // reported as a condition: KEDA missing
        AutoscalingMode::Disabled => Scaler::None,
    }
}

/// The worker Deployment. With an autoscaler, `replicas` is left to it (not set here).
pub fn worker_deployment(network: &Network, s: &PodSettings, partitions: i32, scaler: Scaler) -> Deployment {
    let net = network.name_any();
    let workers = network.spec.workers.clone().unwrap_or_default();
    let (min, _) = worker_bounds(&workers, partitions);
    let mut vars = common_env(s);
    vars.push(env("CHAINWATCH_NETWORK", &net));
    // static consumer-group membership: a restarted container keeps its partitions
    vars.push(EnvVar {
        name: "POD_NAME".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
            ..Default::default()
        }),
    });
    if let Some(a) = &s.allow_destinations {
        vars.push(env("CHAINWATCH_ALLOW_DESTINATIONS", a));
    }
    if let Some(n) = &s.watch_namespaces {
        vars.push(env("CHAINWATCH_WATCH_NAMESPACES", n));
    }
    // tenant scripts run in the tenant's runner pod, never next to the worker's token
    vars.push(env("CHAINWATCH_SCRIPT_RUNNER", chainwatch_platform::runner::URL));
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::child(&net, labels::WORKER)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(s.worker_service_account.clone()),
            topology_spread_constraints: Some(worker_spread(network)),
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(60),
            // scripts run with /tmp as their working directory
            containers: vec![container(
                s,
                "worker",
                vars,
                resources(workers.resources.as_ref(), "250m", "256Mi", "1Gi"),
                ("tmp", "/tmp"),
            )],
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    kafka_template(&mut template, s);
    Deployment {
        metadata: meta(network, &worker_name(&net), Some(&s.namespace), labels::WORKER),
        spec: Some(DeploymentSpec {
            replicas: (scaler == Scaler::None).then_some(min),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&net, labels::WORKER)),
                ..Default::default()
            },
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Workers spread over nodes and zones where the scheduler can (never left Pending for it).
fn worker_spread(network: &Network) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: (*key).into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&network.name_any(), labels::WORKER)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// An autoscaling/v2 HPA on CPU.
pub fn worker_hpa(network: &Network, s: &PodSettings, partitions: i32) -> HorizontalPodAutoscaler {
    let net = network.name_any();
    let workers = network.spec.workers.clone().unwrap_or_default();
    let (min, max) = worker_bounds(&workers, partitions);
    let target =
        workers.autoscaling.as_ref().and_then(|a| a.target_cpu_utilization).unwrap_or(DEFAULT_CPU_TARGET);
    HorizontalPodAutoscaler {
        metadata: meta(network, &worker_name(&net), Some(&s.namespace), labels::WORKER),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: worker_name(&net),
            },
            min_replicas: Some(min.max(1)),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(target),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: None,
        }),
        status: None,
    }
}

/// A KEDA ScaledObject on the filter group's consumer lag (as JSON: KEDA's types are not compiled
/// in).
pub fn worker_scaled_object(network: &Network, s: &PodSettings, partitions: i32) -> Value {
    let net = network.name_any();
    let workers = network.spec.workers.clone().unwrap_or_default();
    let (min, max) = worker_bounds(&workers, partitions);
    let lag = workers.autoscaling.as_ref().and_then(|a| a.lag_threshold).unwrap_or(DEFAULT_LAG_THRESHOLD);
    let m = meta(network, &worker_name(&net), Some(&s.namespace), labels::WORKER);
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": m,
        "spec": {
            "scaleTargetRef": {"name": worker_name(&net)},
            "minReplicaCount": min,
            "maxReplicaCount": max,
            "triggers": [{"type": "kafka", "metadata": {
                "bootstrapServers": s.kafka_bootstrap,
                "consumerGroup": chainwatch_platform::bus::filter_group(&net),
                "topic": chainwatch_platform::bus::blocks_topic(&net),
                "lagThreshold": lag.to_string(),
                "offsetResetPolicy": "earliest",
            }}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(spec: Value) -> Network {
        let mut n: Network =
            serde_json::from_value(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network",
            "metadata": {"name": "eth", "uid": "0a1b"}, "spec": spec}))
            .unwrap();
        n.metadata.uid = Some("0a1b".into());
        n
    }

    fn settings() -> PodSettings {
        PodSettings {
            image: "ghcr.io/chainwatch/chainwatch:1.0".into(),
            image_pull_policy: None,
            namespace: "chainwatch-system".into(),
            kafka_bootstrap: "kafka:9092".into(),
            kafka_options: None,
            allow_destinations: None,
            worker_service_account: "chainwatch-worker".into(),
            api_server_ports: vec![443, 6443],
            kafka_secret: None,
            kafka_settings_version: None,
            watch_namespaces: None,
        }
    }

    #[test]
    fn replicas_never_exceed_partitions() {
        let w: Workers = serde_json::from_value(json!({"minReplicas": 2, "maxReplicas": 20})).unwrap();
        assert_eq!(worker_bounds(&w, 6), (2, 6));
        assert_eq!(worker_bounds(&w, 1), (1, 1));
        assert_eq!(worker_bounds(&Workers::default(), 12), (1, 4));
    }

    #[test]
    fn the_ingester_has_one_replica_a_volume_and_least_privilege() {
        let n = network(
            json!({"type": "evm", "rpc": [{"urlSecretRef": {"name": "alchemy", "key": "url"}}], "ingester": {"storageSize": "1Gi"}}),
        );
        let sts = ingester_statefulset(&n, &settings());
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/chainwatch/chainwatch:1.0"));
        assert_eq!(c.args.as_deref(), Some(&["ingester".to_string()][..]));
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert_eq!(
            spec.volume_claim_templates.unwrap()[0]
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "1Gi"
        );
        assert_eq!(sts.metadata.owner_references.unwrap()[0].controller, Some(true));
        let role = ingester_role(&n, &settings()).unwrap();
        assert_eq!(role.rules.unwrap()[0].resource_names.as_deref(), Some(&["alchemy".to_string()][..]));
        let mut gone = network(json!({"type": "evm", "rpc": [{"url": "https://x"}]}));
        gone.metadata.name = Some("old".into());
        gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let binding = ingester_binding(&[std::sync::Arc::new(n), std::sync::Arc::new(gone)], &settings());
        assert_eq!(binding.role_ref.name, INGESTER_ROLE);
        let subjects: Vec<String> = binding.subjects.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(
            subjects,
            ["chainwatch-ingester-eth"],
            "a Network being deleted loses its ingester's permissions"
        );
    }

    #[test]
    fn autoscaler_choice_and_replicas_ownership() {
        assert_eq!(scaler(AutoscalingMode::Auto, true), Scaler::Keda);
        assert_eq!(scaler(AutoscalingMode::Auto, false), Scaler::Hpa);
        assert_eq!(scaler(AutoscalingMode::Disabled, true), Scaler::None);
        let n = network(
            json!({"type": "evm", "rpc": [{"url": "https://x"}], "workers": {"minReplicas": 3, "maxReplicas": 9}}),
        );
        assert_eq!(
            worker_deployment(&n, &settings(), 6, Scaler::Hpa).spec.unwrap().replicas,
            None,
            "the HPA owns replicas"
        );
        assert_eq!(worker_deployment(&n, &settings(), 6, Scaler::None).spec.unwrap().replicas, Some(3));
        let hpa = worker_hpa(&n, &settings(), 6).spec.unwrap();
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 6));
        let so = worker_scaled_object(&n, &settings(), 6);
        assert_eq!(so["spec"]["triggers"][0]["metadata"]["consumerGroup"], "chainwatch-filter-eth");
        assert_eq!(so["spec"]["maxReplicaCount"], 6);
    }
}

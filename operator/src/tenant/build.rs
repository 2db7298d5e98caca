//! What a Tenant gets in each of its namespaces, as pure functions:
//!
//! * `chainwatch-tenant-editors`: its users and groups bound to the aggregated ClusterRole
//!   `chainwatch-tenant-editor` (Monitors, Triggers, and the Secrets and ConfigMaps they read —
//!   nothing else);
//! * `chainwatch-platform-readers`: the operator's and the workers' ServiceAccounts bound to
//!   `chainwatch-platform-reader` (read Secrets and ConfigMaps). This is the only way either reads
//!   a Secret outside its own namespace: the platform reads tenant namespaces, and nothing else.
//!
//! * where the Tenant allows scripts, its script runner in its first namespace: a Deployment of
//!   `chainwatch script-runner` without a ServiceAccount token, its Service, a NetworkPolicy that
//!   lets only the workers in and nothing out (unless the Tenant allows scripts the network), and
//!   `chainwatch-runner-managers`, which lets the operator keep them there and nowhere else.
//!
//! The bindings have fixed names, so the operator's permission to change and delete
//! RoleBindings is limited to these two names (`config/rbac/operator.yaml`).

use std::collections::BTreeMap;

use chainwatch_crds::Tenant;
use chainwatch_platform::runner;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, Namespace, PodSpec, PodTemplateSpec,
    Probe, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::network::build::{PodSettings, env, pod_security, resources, restricted};
use crate::{labels, netpol};

/// The ClusterRole tenants are bound to (installed by `config/rbac`).
pub const EDITOR_ROLE: &str = "chainwatch-tenant-editor";
/// The binding of the tenant's people.
pub const EDITORS_BINDING: &str = "chainwatch-tenant-editors";
/// The ClusterRole that lets the platform read a tenant namespace's Secrets and ConfigMaps.
pub const READER_ROLE: &str = "chainwatch-platform-reader";
/// The binding of the operator and the workers.
pub const READERS_BINDING: &str = "chainwatch-platform-readers";

const RBAC: &str = "rbac.authorization.k8s.io";

fn meta(tenant: &Tenant, name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels::tenant(&tenant.name_any())),
        owner_references: tenant.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn cluster_role(name: &str) -> RoleRef {
    RoleRef { api_group: RBAC.into(), kind: "ClusterRole".into(), name: name.into() }
}

/// The tenant's users and groups, editors in `namespace`.
pub fn editors(tenant: &Tenant, namespace: &str) -> RoleBinding {
    let subject = |kind: &str, name: &String| Subject {
        kind: kind.into(),
        name: name.clone(),
        api_group: Some(RBAC.into()),
        namespace: None,
    };
    let subjects = tenant
        .spec
        .users
        .iter()
        .map(|u| subject("User", u))
        .chain(tenant.spec.groups.iter().map(|g| subject("Group", g)))
        .collect();
    RoleBinding {
        metadata: meta(tenant, EDITORS_BINDING, namespace),
        role_ref: cluster_role(EDITOR_ROLE),
        subjects: Some(subjects),
    }
}

/// The platform's ServiceAccounts (`(namespace, name)`), readers of `namespace`'s Secrets and
/// ConfigMaps.
pub fn platform_readers(tenant: &Tenant, namespace: &str, accounts: &[(&str, &str)]) -> RoleBinding {
    RoleBinding {
        metadata: meta(tenant, READERS_BINDING, namespace),
        role_ref: cluster_role(READER_ROLE),
        subjects: Some(
            accounts
                .iter()
                .map(|(ns, name)| Subject {
                    kind: "ServiceAccount".into(),
                    name: (*name).into(),
                    namespace: Some((*ns).into()),
                    api_group: None,
                })
                .collect(),
        ),
    }
}

/// The ClusterRole that lets the operator run a tenant's script runner in the tenant's namespace.
pub const RUNNER_MANAGER_ROLE: &str = "chainwatch-runner-manager";
/// The binding of the operator to it, in the runner's namespace only.
pub const RUNNER_MANAGERS_BINDING: &str = "chainwatch-runner-managers";

/// The operator, allowed to run the script runner in `namespace`.
pub fn runner_managers(tenant: &Tenant, namespace: &str, operator: (&str, &str)) -> RoleBinding {
    RoleBinding {
        metadata: meta(tenant, RUNNER_MANAGERS_BINDING, namespace),
        role_ref: cluster_role(RUNNER_MANAGER_ROLE),
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: operator.1.into(),
            namespace: Some(operator.0.into()),
            api_group: None,
        }]),
    }
}

fn runner_meta(tenant: &Tenant, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        labels: Some(labels::tenant_component(&tenant.name_any(), labels::SCRIPT_RUNNER)),
        ..meta(tenant, runner::NAME, namespace)
    }
}

fn runner_selector(tenant: &Tenant) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::COMPONENT.into(), labels::SCRIPT_RUNNER.into()),
        (labels::TENANT.into(), tenant.name_any()),
    ])
}

/// The runner's ServiceAccount: no token is mounted (it talks to no API).
pub fn runner_service_account(tenant: &Tenant, namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: runner_meta(tenant, namespace),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The tenant's script runner: `chainwatch script-runner` for this tenant only, restricted pod
/// security, no token, a size-limited `/tmp`, its own CPU and memory limits (and whatever
/// ResourceQuota the platform puts on the namespace).
pub fn runner_deployment(tenant: &Tenant, namespace: &str, pods: &PodSettings) -> Deployment {
    let limits = &tenant.spec.limits;
    let container = Container {
        name: "script-runner".into(),
        image: Some(pods.image.clone()),
        image_pull_policy: pods.image_pull_policy.clone(),
        args: Some(vec!["script-runner".into()]),
        env: Some(vec![
            env("CHAINWATCH_TENANT", tenant.name_any()),
            env("CHAINWATCH_SCRIPT_NETWORK", limits.script_network.to_string()),
            env("CHAINWATCH_LOG_FORMAT", "json"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("runner".into()),
            container_port: i32::from(runner::PORT),
            ..Default::default()
        }]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/livez".into()),
                port: IntOrString::String("runner".into()),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::String("runner".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(resources(None, "50m", "64Mi", "512Mi")),
        security_context: Some(restricted()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Deployment {
        metadata: runner_meta(tenant, namespace),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(runner_selector(tenant)), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(runner_meta(tenant, namespace).labels.unwrap_or_default()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(runner::NAME.into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity("64Mi".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The runner's Service (the workers' way in).
pub fn runner_service(tenant: &Tenant, namespace: &str) -> Service {
    Service {
        metadata: runner_meta(tenant, namespace),
        spec: Some(ServiceSpec {
            selector: Some(runner_selector(tenant)),
            ports: Some(vec![ServicePort {
                name: Some("runner".into()),
                port: i32::from(runner::PORT),
                target_port: Some(IntOrString::String("runner".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only the workers (pods of component `worker` in the platform's namespace) reach the runner;
/// the runner reaches nothing — or, when the Tenant allows scripts the network, the public
/// internet and DNS, never cluster or metadata addresses.
pub fn runner_network_policy(tenant: &Tenant, namespace: &str, platform_namespace: &str) -> NetworkPolicy {
    let workers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                platform_namespace.into(),
            )])),
            ..Default::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(labels::COMPONENT.into(), labels::WORKER.into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let egress = if tenant.spec.limits.script_network {
        vec![netpol::dns(), netpol::public_internet()]
    } else {
        Vec::new()
    };
    let ingress = NetworkPolicyIngressRule {
        from: Some(vec![workers]),
        ports: Some(vec![NetworkPolicyPort {
            protocol: Some("TCP".into()),
            port: Some(IntOrString::Int(i32::from(runner::PORT))),
            ..Default::default()
        }]),
    };
    netpol::policy(runner_meta(tenant, namespace), runner_selector(tenant), vec![ingress], egress)
}

/// A namespace created for a tenant (never deleted with it: the data inside is the tenant's).
pub fn namespace(tenant: &Tenant, name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels::tenant(&tenant.name_any())),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> Tenant {
        let mut t: Tenant = serde_json::from_value(
            json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"namespaces": ["acme"], "users": ["alice@acme.example"], "groups": ["acme-oncall"]}}),
        )
        .unwrap();
        t.metadata.uid = Some("u1".into());
        t
    }

    #[test]
    fn users_and_groups_are_bound_to_the_editor_role() {
        let rb = editors(&tenant(), "acme");
        assert_eq!(rb.metadata.name.as_deref(), Some(EDITORS_BINDING));
        assert_eq!(rb.role_ref.name, EDITOR_ROLE);
        let subjects: Vec<(String, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.name)).collect();
        assert_eq!(
            subjects,
            [("User".into(), "alice@acme.example".into()), ("Group".into(), "acme-oncall".into())]
        );
        assert_eq!(rb.metadata.labels.unwrap()[labels::TENANT], "acme");
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
            api_server_ports: vec![443],
            kafka_secret: None,
            kafka_settings_version: None,
            watch_namespaces: None,
        }
    }

    #[test]
    fn the_script_runner_has_no_token_no_egress_and_only_workers_reach_it() {
        let t = tenant();
        let sa = runner_service_account(&t, "acme");
        assert_eq!(sa.automount_service_account_token, Some(false));
        let d = runner_deployment(&t, "acme", &settings());
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        assert_eq!(c.args.as_deref(), Some(&["script-runner".to_string()][..]));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.run_as_non_root, sc.allow_privilege_escalation, sc.read_only_root_filesystem),
            (Some(true), Some(false), Some(true))
        );
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "CHAINWATCH_TENANT" && e.value.as_deref() == Some("acme"))
        );
        let np = runner_network_policy(&t, "acme", "chainwatch-system").spec.unwrap();
        assert_eq!(np.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]));
        assert_eq!(np.egress.as_deref(), Some(&[][..]), "no egress at all");
        let from = &np.ingress.unwrap()[0].from.clone().unwrap()[0];
        assert_eq!(
            from.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "chainwatch-system"
        );
        let mut open = tenant();
        open.spec.limits.script_network = true;
        let egress = runner_network_policy(&open, "acme", "chainwatch-system").spec.unwrap().egress.unwrap();
        let except = egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().except.clone().unwrap();
        assert!(except.contains(&"169.254.0.0/16".to_string()) && except.contains(&"10.0.0.0/8".to_string()));
    }

    #[test]
    fn the_platform_reads_tenant_namespaces_through_one_binding() {
        let rb = platform_readers(
            &tenant(),
            "acme",
            &[("cw", "chainwatch-operator"), ("cw", "chainwatch-worker")],
        );
        assert_eq!(
            (rb.metadata.name.as_deref(), rb.role_ref.name.as_str()),
            (Some(READERS_BINDING), READER_ROLE)
        );
        let subjects: Vec<(String, Option<String>, String)> =
            rb.subjects.unwrap().into_iter().map(|s| (s.kind, s.namespace, s.name)).collect();
        assert_eq!(
            subjects,
            [
                ("ServiceAccount".into(), Some("cw".into()), "chainwatch-operator".into()),
                ("ServiceAccount".into(), Some("cw".into()), "chainwatch-worker".into())
            ]
        );
    }
}

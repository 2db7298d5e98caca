//! What keeps a Network's pods available and contained, as pure functions: a PodDisruptionBudget
//! each for its ingester and its workers, and a NetworkPolicy each that lets in only scrapes and
//! probes of the admin port and lets out only what the pods talk to — DNS, the Kafka brokers and
//! the API server (by port: a policy cannot name their addresses), and for the ingester its RPC
//! endpoints' ports, for the workers the tenants' script runners and notification destinations
//! (the public internet, never cluster, node or metadata addresses unless allowlisted with
//! `--allow-destination`, which the workers enforce again for every request).
//!
//! Voluntary disruptions (node drains, cluster upgrades) take one pod at a time. The ingester is a
//! single pod whose checkpoint makes a restart lose nothing, so its budget lets that one pod go —
//! a budget that kept it (`minAvailable: 1`) would block every drain of its node. Pods that are not
//! ready may always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`), so a crashlooping pod
//! never blocks a drain either.

use chainwatch_core::config::NetworkSettings;
use chainwatch_crds::Network;
use chainwatch_platform::runner;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::build::{PodSettings, ingester_name, meta, worker_name};
use crate::{labels, netpol};

/// The port Kafka brokers listen on when the bootstrap list names none.
const KAFKA_DEFAULT_PORT: u16 = 9092;

fn budget(network: &Network, s: &PodSettings, name: &str, component: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(network, name, Some(&s.namespace), component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&network.name_any(), component)),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The ingester's disruption budget.
pub fn ingester_budget(network: &Network, s: &PodSettings) -> PodDisruptionBudget {
    budget(network, s, &ingester_name(&network.name_any()), labels::INGESTER)
}

/// The workers' disruption budget.
pub fn worker_budget(network: &Network, s: &PodSettings) -> PodDisruptionBudget {
    budget(network, s, &worker_name(&network.name_any()), labels::WORKER)
}

/// The ports of a Kafka bootstrap list (`host:port,host:port`).
pub fn kafka_ports(bootstrap: &str) -> Vec<u16> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let tail = b.rsplit_once(']').map_or(b, |(_, t)| t);
            tail.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(KAFKA_DEFAULT_PORT)
        })
        .collect()
}

/// What every pipeline pod reaches: DNS, Kafka, the API server.
fn platform_egress(s: &PodSettings) -> Vec<NetworkPolicyEgressRule> {
    let mut rules = vec![netpol::dns()];
    rules.extend(netpol::tcp_ports(&kafka_ports(&s.kafka_bootstrap)));
    rules.extend(netpol::tcp_ports(&s.api_server_ports));
    rules
}

/// The ingester's policy: out to DNS, Kafka, the API server and the ports of its RPC endpoints
/// (`settings`: none while the spec cannot run).
pub fn ingester_policy(
    network: &Network,
    s: &PodSettings,
    settings: Option<&NetworkSettings>,
) -> NetworkPolicy {
    let net = network.name_any();
    let rpc: Vec<u16> = settings
        .map(|x| x.endpoints.iter().filter_map(|e| chainwatch_platform::redact::port(&e.url)).collect())
        .unwrap_or_default();
    let mut egress = platform_egress(s);
    egress.extend(netpol::tcp_ports(&rpc));
    netpol::policy(
        meta(network, &ingester_name(&net), Some(&s.namespace), labels::INGESTER),
        labels::selector(&net, labels::INGESTER),
        vec![netpol::port_from_anywhere("admin")],
        egress,
    )
}

/// `--allow-destination` entries as CIDRs (a bare address is its own /32 or /128).
fn allowed_ranges(s: &PodSettings) -> Vec<String> {
    s.allow_destinations
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match (a.contains('/'), a.contains(':')) {
            (true, _) => a.to_string(),
            (false, false) => format!("{a}/32"),
            (false, true) => format!("{a}/128"),
        })
        .collect()
}

/// The workers' policy: out to DNS, Kafka, the API server, the tenants' script runners, the
/// public internet (notification destinations) and the allowlisted internal destinations.
pub fn worker_policy(network: &Network, s: &PodSettings) -> NetworkPolicy {
    let net = network.name_any();
    let mut egress = platform_egress(s);
    egress.push(netpol::pods_anywhere(
        [(labels::COMPONENT.to_string(), labels::SCRIPT_RUNNER.to_string())].into(),
        runner::PORT,
    ));
    egress.push(netpol::public_internet());
    egress.extend(netpol::ranges(&allowed_ranges(s)));
    netpol::policy(
        meta(network, &worker_name(&net), Some(&s.namespace), labels::WORKER),
        labels::selector(&net, labels::WORKER),
        vec![netpol::port_from_anywhere("admin")],
        egress,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_ports_come_from_the_bootstrap_list() {
        assert_eq!(kafka_ports("kafka-0.kafka:9093, kafka-1.kafka:9094"), [9093, 9094]);
        assert_eq!(kafka_ports("kafka"), [9092]);
        assert_eq!(kafka_ports("[fd00::1]:9095"), [9095]);
    }
}

//! The NetworkPolicy rules the operator's policies are made of — DNS, the public internet (never
//! cluster, node or metadata ranges), TCP ports anywhere, the admin port — so each policy says
//! what its pods may reach in these words, and each rule is spelled once.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Internal IPv4 ranges (private, link-local with the cloud metadata address, carrier-grade NAT
/// that some clusters use for pods) left out of "the public internet".
pub const INTERNAL_RANGES: [&str; 5] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"];
/// Internal IPv6 ranges (unique local, link-local) left out of "the public internet".
pub const INTERNAL_RANGES_V6: [&str; 2] = ["fc00::/7", "fe80::/10"];

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".into()),
        port: Some(IntOrString::Int(i32::from(port))),
        ..Default::default()
    }
}

/// Name resolution, wherever the cluster's DNS runs.
pub fn dns() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(
            ["UDP", "TCP"]
                .iter()
                .map(|p| NetworkPolicyPort {
                    protocol: Some((*p).into()),
                    port: Some(IntOrString::Int(53)),
                    ..Default::default()
                })
                .collect(),
        ),
        to: None,
    }
}

fn block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then(|| except.iter().map(|r| (*r).to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// Any public address, IPv4 and IPv6, on any port.
pub fn public_internet() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![block("0.0.0.0/0", &INTERNAL_RANGES), block("::/0", &INTERNAL_RANGES_V6)]),
        ports: None,
    }
}

/// The given address ranges, on any port (allowlisted internal destinations).
pub fn ranges(cidrs: &[String]) -> Option<NetworkPolicyEgressRule> {
    (!cidrs.is_empty()).then(|| NetworkPolicyEgressRule {
        to: Some(cidrs.iter().map(|c| block(c, &[])).collect()),
        ports: None,
    })
}

/// The given TCP ports at any address (a service known by port only, such as Kafka brokers or
/// the API server, whose addresses a policy cannot name).
pub fn tcp_ports(ports: &[u16]) -> Option<NetworkPolicyEgressRule> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    (!ports.is_empty())
        .then(|| NetworkPolicyEgressRule { to: None, ports: Some(ports.into_iter().map(tcp).collect()) })
}

/// Pods with `labels` in any namespace, on one TCP port.
pub fn pods_anywhere(labels: BTreeMap<String, String>, port: u16) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector { match_labels: Some(labels), ..Default::default() }),
            ..Default::default()
        }]),
        ports: Some(vec![tcp(port)]),
    }
}

/// Scrapes and probes of a named container port, from anywhere (kubelet probes come from the
/// node, Prometheus from wherever it runs).
pub fn port_from_anywhere(port: &str) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: None,
        ports: Some(vec![NetworkPolicyPort {
            protocol: Some("TCP".into()),
            port: Some(IntOrString::String(port.into())),
            ..Default::default()
        }]),
    }
}

/// A policy for the pods `selector` matches: only `ingress` in and only `egress` out.
pub fn policy(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    ingress: Vec<NetworkPolicyIngressRule>,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector), ..Default::default() }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

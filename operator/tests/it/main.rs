//! Operator tests against the real parts: kube-testenv's API server and the Kafka-protocol broker.
//! They share one API server, so they run one at a time (`.config/nextest.toml`, group `kube`).

mod admission;
mod api_server;
mod argo_health;
mod harness;
mod keda;
mod leader;
mod network;
mod policies;
mod tenant;

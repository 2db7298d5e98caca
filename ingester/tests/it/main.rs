//! Ingester integration tests against the real parts of the test bed: anvil, the Kafka-protocol
//! broker, recorded Stellar RPC data.

mod broker;
mod common;
mod evm;
mod failover;
mod identity;
mod outage;
mod stellar;

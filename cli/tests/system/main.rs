//! The system against its real parts, as separate processes: anvil → `chainwatch ingester` →
//! the Kafka-protocol broker → `chainwatch worker` → local webhook, Slack-shaped and SMTP
//! receivers, configured through the kube-testenv API server and admitted by the operator. Kills
//! with SIGKILL where the claim is "a crash loses nothing". Numbers are printed (`--no-capture`)
//! for the notes; nothing is asserted on time.

mod bed;
#[path = "../../../operator/tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

mod big_blocks;
mod broker;
mod config_changes;
mod crashes;
mod isolation;
mod notifications;
mod outages;
mod reorgs;
mod scoped_install;
mod verdicts;

//! What the pipelines and the operator's own topic administration are told about Kafka, read
//! from the caches at every reconcile so that a change counts without restarting anything: the
//! bootstrap servers and options from the ConfigMap `--kafka-config-map` names (else the
//! operator's flags), and the Secret `--kafka-secret` names (credentials, mounted into the pods).
//! The resourceVersions of both go into the pod templates, so a change rolls the pods.

use chainwatch_core::config::{Catalog, Lookup};
use chainwatch_platform::bus::kafka::{KafkaArgs, parse_options};

use super::build::PodSettings;
use crate::conditions::{self, Check};
use crate::context::Ctx;

/// The ConfigMap key with the bootstrap servers.
pub const BOOTSTRAP_KEY: &str = "kafka-bootstrap";
/// The ConfigMap key with the extra librdkafka properties (`key=value,…`, never secrets).
pub const OPTIONS_KEY: &str = "kafka-options";

/// The Kafka settings in effect now.
pub struct Kafka {
    /// The pod settings with the current bootstrap, options and versions.
    pub pods: PodSettings,
    /// The operator's own client settings (`None` with `--no-kafka`).
    pub admin: Option<KafkaArgs>,
    /// Why the pipelines cannot be given working settings (Ready's reasons).
    pub problems: Vec<Check>,
}

fn problem(reason: &str, message: String) -> Check {
    Check::new("Ready", false, reason, message)
}

/// The settings in effect: the flags, overridden by the ConfigMap and completed by the Secret.
pub fn current(ctx: &Ctx) -> Kafka {
    let mut k = Kafka { pods: ctx.pods.clone(), admin: ctx.kafka.clone(), problems: Vec::new() };
    let ns = ctx.pods.namespace.clone();
    if let Some(name) = &ctx.kafka_config_map {
        match ctx.caches.config_map(&ns, name) {
            Lookup::Found(cm) => {
                k.pods.kafka_settings_version = cm.metadata.resource_version.clone();
                let data = cm.data.clone().unwrap_or_default();
                if let Some(bootstrap) = data.get(BOOTSTRAP_KEY).map(|b| b.trim()).filter(|b| !b.is_empty()) {
                    k.pods.kafka_bootstrap = bootstrap.to_string();
                    if let Some(admin) = k.admin.as_mut() {
                        admin.bootstrap = bootstrap.to_string();
                    }
                }
                match parse_options(data.get(OPTIONS_KEY).map(String::as_str).unwrap_or("")) {
                    Ok(options) => {
                        k.pods.kafka_options = (!options.is_empty()).then(|| {
                            options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                        });
                        if let Some(admin) = k.admin.as_mut() {
                            admin.options = options;
                        }
                    }
                    Err(e) => k.problems.push(problem(
                        "InvalidKafkaSettings",
                        format!(
                            "ConfigMap {ns}/{name}, key {OPTIONS_KEY}: {e}: write librdkafka properties as key=value, comma-separated (credentials go in the --kafka-secret Secret)"
                        ),
                    )),
                }
            }
            Lookup::Missing => k.problems.push(problem(
                "KafkaSettingsNotFound",
                format!(
                    "ConfigMap {ns}/{name} (the operator's --kafka-config-map) does not exist: create it with {BOOTSTRAP_KEY} (and {OPTIONS_KEY})"
                ),
            )),
            Lookup::Unknown(why) => k.problems.push(problem(
                conditions::REFERENCE_PENDING,
                format!("ConfigMap {ns}/{name} (--kafka-config-map): {why}"),
            )),
        }
    }
    if let Some(secret) = k.pods.kafka_secret.as_mut() {
        match ctx.caches.secret(&ns, &secret.name) {
            Lookup::Found(s) => secret.version = s.metadata.resource_version.clone(),
            Lookup::Missing => k.problems.push(problem(
                "KafkaCredentialsNotFound",
                format!(
                    "Secret {ns}/{} (the operator's --kafka-secret) does not exist: create it with the Kafka credentials (docs/install.md, Kafka)",
                    secret.name
                ),
            )),
            Lookup::Unknown(why) => k.problems.push(problem(
                conditions::REFERENCE_PENDING,
                format!("Secret {ns}/{} (--kafka-secret): {why}", secret.name),
            )),
        }
    }
    k
}

//! `Trigger`: where and how a notification is delivered (namespaced). Mirrors OpenZeppelin
//! Monitor's trigger JSON; credentials come from Secrets of the same namespace.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, DurationString, RetryPolicy, ScriptSpec, SecretKeyRef, Time, conditions_schema,
};

/// A notification channel: exactly one of slack, discord, telegram, email, webhook or script.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "chainwatch.io",
    version = "v1alpha1",
    kind = "Trigger",
    plural = "triggers",
    namespaced,
    status = "TriggerStatus",
    shortname = "trg",
    shortname = "cwtrg",
    category = "chainwatch",
    doc = "A notification channel that Monitors of the same namespace fire on a match.",
    printcolumn(name = "Channel", type_ = "string", json_path = ".status.channel"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Delivered", type_ = "integer", priority = 1, json_path = ".status.deliveredCount"),
    printcolumn(name = "Failures", type_ = "integer", json_path = ".status.failureCount"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pendingCount"),
    printcolumn(name = "Last Delivery", type_ = "date", json_path = ".status.lastDeliveryTime"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.slack) ? 1 : 0) + (has(self.discord) ? 1 : 0) + (has(self.telegram) ? 1 : 0) + (has(self.email) ? 1 : 0) + (has(self.webhook) ? 1 : 0) + (has(self.script) ? 1 : 0) == 1")
    .message("set exactly one trigger kind: slack, discord, telegram, email, webhook or script"))]
#[x_kube(validation = Rule::new("has(self.message) || has(self.script) || (has(self.webhook) && has(self.webhook.payloadMode) && self.webhook.payloadMode == 'Raw')")
    .message("spec.message (title and body) is required, except for script triggers and webhooks with payloadMode Raw"))]
#[x_kube(validation = Rule::new("!has(self.discord) || !has(self.message) || size(self.message.body) <= 2000")
    .message("Discord limits message.body to 2000 characters"))]
#[x_kube(validation = Rule::new("!has(self.telegram) || !has(self.message) || size(self.message.body) <= 4096")
    .message("Telegram limits message.body to 4096 characters"))]
#[x_kube(validation = Rule::new("!has(self.email) || !has(self.message) || size(self.message.title) <= 998")
    .message("an email subject (message.title) is limited to 998 characters"))]
pub struct TriggerSpec {
    /// Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackTrigger>,
    /// Discord webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordTrigger>,
    /// Telegram bot message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramTrigger>,
    /// Email over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTrigger>,
    /// Generic HTTP webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTrigger>,
    /// A script that receives the match as JSON on stdin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptSpec>,
    /// Notification text; `${...}` placeholders are replaced with match variables
    /// (`${monitor.name}`, `${transaction.hash}`, `${events.0.args.value}`, `${events}`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageTemplate>,
    /// How failed deliveries are retried before they go to the dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// Limits how often this trigger fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
}

/// Title and body of a notification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplate {
    /// Title (Slack/Discord/Telegram bold first line, email subject, webhook `title`).
    #[schemars(length(min = 1, max = 4096))]
    pub title: String,
    /// Body (Markdown).
    #[schemars(length(min = 1, max = 65536))]
    pub body: String,
}

/// Slack incoming webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackTrigger {
    /// Secret key holding the webhook URL (`https://hooks.slack.com/services/...`).
    pub webhook_url_secret_ref: SecretKeyRef,
}

/// Discord webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscordTrigger {
    /// Secret key holding the webhook URL (`https://discord.com/api/webhooks/...`).
    pub webhook_url_secret_ref: SecretKeyRef,
}

/// Telegram bot message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelegramTrigger {
    /// Secret key holding the bot token (`123456789:AA…`).
    pub token_secret_ref: SecretKeyRef,
    /// Chat to post to.
    #[schemars(length(min = 1, max = 64))]
    pub chat_id: String,
    /// Disable link previews.
    #[serde(default)]
    pub disable_web_preview: bool,
    /// Bot API base URL. Default `https://api.telegram.org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Email over SMTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailTrigger {
    /// SMTP server host name.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// SMTP port. Default: 465 for ImplicitTls, 587 for StartTls, 25 for None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// `ImplicitTls` (SMTPS, default, as OpenZeppelin Monitor), `StartTls` or `None` (plain text;
    /// only for local relays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// Secret key holding the SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// From address.
    #[schemars(length(min = 3, max = 320))]
    pub sender: String,
    /// To addresses.
    #[schemars(length(min = 1, max = 100))]
    pub recipients: Vec<String>,
}

/// SMTP transport security.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SmtpTls {
    /// TLS from the first byte (SMTPS, usually port 465).
    #[default]
    ImplicitTls,
    /// Plain connection upgraded with STARTTLS (usually port 587); TLS is required.
    StartTls,
    /// No TLS.
    None,
}

/// Generic HTTP webhook.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url or urlSecretRef"))]
#[x_kube(validation = Rule::new("!has(self.url) || self.url.startsWith('http://') || self.url.startsWith('https://')")
    .message("webhook.url must start with http:// or https://"))]
pub struct WebhookTrigger {
    /// Target URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Target URL from a Secret key (when the URL carries a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// HTTP method: POST (default), PUT, PATCH, GET or DELETE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Extra request headers. `Content-Type: application/json` is the default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Secret key holding the HMAC-SHA256 signing secret; when set, requests carry `X-Signature` and
    /// `X-Timestamp` as in OpenZeppelin Monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// `Template` (default: `{"title", "body"}` from message) or `Raw` (the match as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_mode: Option<PayloadMode>,
}

/// HTTP method of a webhook.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
    Get,
    Delete,
}

/// Webhook payload shape.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PayloadMode {
    /// `{"title": ..., "body": ...}` rendered from spec.message.
    #[default]
    Template,
    /// The match record as JSON.
    Raw,
}

/// Notification rate limits for one trigger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// At most this many notifications per window; the rest are dropped and counted in a metric.
    #[schemars(range(min = 1))]
    pub max_notifications: u32,
    /// The window, e.g. `1m`.
    pub window: DurationString,
    /// Quiet time after a notification before the next one, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<DurationString>,
}

/// Observed state. The operator writes Ready and the channel; the worker notify stage writes the
/// delivery counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// Ready (credentials resolved and valid), plus Delivering (worker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation the operator last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// slack, discord, telegram, email, webhook or script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Successful deliveries: counted by the worker, and after a worker's crash brought up to
    /// the distinct notifications the delivered-key log holds for this Trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_count: Option<u64>,
    /// Notifications waiting for a retry after a failed delivery (the receiver is down, or
    /// answered with a transient error); see the `Delivering` condition for the newest error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_count: Option<u64>,
    /// Deliveries that failed after every retry (dead-lettered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_count: Option<u64>,
    /// Time of the newest successful delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<Time>,
    /// The newest delivery error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When lastError happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
}

/// The channels a Trigger can notify through, as [`TriggerSpec::channel`] names them.
pub const CHANNELS: [&str; 6] = ["slack", "discord", "telegram", "email", "webhook", "script"];

impl TriggerSpec {
    /// Every Secret key this trigger names.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut out = Vec::new();
        if let Some(s) = &self.slack {
            out.push(&s.webhook_url_secret_ref);
        }
        if let Some(d) = &self.discord {
            out.push(&d.webhook_url_secret_ref);
        }
        if let Some(t) = &self.telegram {
            out.push(&t.token_secret_ref);
        }
        if let Some(e) = &self.email {
            out.extend(e.username_secret_ref.iter());
            out.extend(e.password_secret_ref.iter());
        }
        if let Some(w) = &self.webhook {
            out.extend(w.url_secret_ref.iter());
            out.extend(w.secret_ref.iter());
        }
        out
    }

    /// The configured channel kind.
    pub fn channel(&self) -> Option<&'static str> {
        let set = [
            self.slack.is_some(),
            self.discord.is_some(),
            self.telegram.is_some(),
            self.email.is_some(),
            self.webhook.is_some(),
            self.script.is_some(),
        ];
        CHANNELS.into_iter().zip(set).find_map(|(name, set)| set.then_some(name))
    }
}

/// Trigger condition types (besides Ready).
pub mod conditions {
    /// The worker delivered the last notification (False after a dead-letter).
    pub const DELIVERING: &str = "Delivering";
}

//! Upstream trigger JSON (§3.4: a map of id → `{name, trigger_type, config}`) → [`TriggerSpec`].

use chainwatch_crds::trigger::{
    DiscordTrigger, EmailTrigger, HttpMethod, PayloadMode, SlackTrigger, SmtpTls, TelegramTrigger,
    WebhookTrigger,
};
use chainwatch_crds::{
    DurationString, Jitter, MessageTemplate, RetryPolicy, ScriptSpec, SecretKeyRef, TriggerSpec,
};
use serde_json::Value as Json;

use crate::{
    NeededSecret, UpstreamError, duration, err, kube_name, script_language, secret_value, str_field,
    unknown_fields,
};

/// A trigger converted from upstream JSON.
#[derive(Debug, Clone)]
pub struct ImportedTrigger {
    /// Kubernetes name (from the id monitors refer to).
    pub name: String,
    /// Upstream `name`.
    pub display_name: String,
    pub spec: TriggerSpec,
    /// Values for the trigger's Secret.
    pub secrets: Vec<NeededSecret>,
    /// `script_path` of a script trigger (the importer reads it).
    pub script_path: Option<String>,
    pub unsupported: Vec<(String, String)>,
}

/// Converts one entry of an upstream triggers file; `secret_name` is the Secret that will hold
/// its credentials.
pub fn trigger_from_upstream(
    id: &str,
    v: &Json,
    secret_name: &str,
) -> Result<ImportedTrigger, UpstreamError> {
    let kind = str_field(v, "trigger_type", "")?.to_ascii_lowercase();
    let c = v.get("config").ok_or_else(|| err("config", "is missing"))?;
    let mut secrets = Vec::new();
    let mut secret = |field: &str, key: &str| -> Result<SecretKeyRef, UpstreamError> {
        let source = secret_value(c.get(field).unwrap_or(&Json::Null), &format!("config.{field}"))?;
        secrets.push(NeededSecret { key: key.into(), field: format!("config.{field}"), source });
        Ok(SecretKeyRef { name: secret_name.into(), key: key.into() })
    };
    let message = match c.get("message").filter(|m| !m.is_null()) {
        None => None,
        Some(m) => Some(MessageTemplate {
            title: str_field(m, "title", "config.message.")?.to_string(),
            body: str_field(m, "body", "config.message.")?.to_string(),
        }),
    };
    let mut spec = TriggerSpec { message, ..Default::default() };
    let mut script_path = None;
    let known: &[&str] = match kind.as_str() {
        "slack" => {
            spec.slack = Some(SlackTrigger { webhook_url_secret_ref: secret("slack_url", "url")? });
            &["slack_url", "message", "retry_policy"]
        }
        "discord" => {
            spec.discord = Some(DiscordTrigger { webhook_url_secret_ref: secret("discord_url", "url")? });
            &["discord_url", "message", "retry_policy"]
        }
        "telegram" => {
            spec.telegram = Some(TelegramTrigger {
                token_secret_ref: secret("token", "token")?,
                chat_id: match c.get("chat_id") {
                    Some(Json::String(s)) => s.clone(),
                    Some(Json::Number(n)) => n.to_string(),
                    _ => return Err(err("config.chat_id", "is missing")),
                },
                disable_web_preview: c.get("disable_web_preview").and_then(Json::as_bool).unwrap_or(false),
                api_url: None,
            });
            &["token", "chat_id", "disable_web_preview", "message", "retry_policy"]
        }
        "webhook" => {
            let url = secret("url", "url")?;
            let signing = match c.get("secret").filter(|s| !s.is_null()) {
                Some(_) => Some(secret("secret", "signing-secret")?),
                None => None,
            };
            let method = match c.get("method").and_then(Json::as_str).map(str::to_ascii_uppercase).as_deref()
            {
                None | Some("POST") => None,
                Some("PUT") => Some(HttpMethod::Put),
                Some("PATCH") => Some(HttpMethod::Patch),
                Some("GET") => Some(HttpMethod::Get),
                Some("DELETE") => Some(HttpMethod::Delete),
                Some(other) => {
                    return Err(err("config.method", format!("`{other}` is not GET, POST, PUT or DELETE")));
                }
            };
            let payload_mode =
                match c.get("payload_mode").and_then(Json::as_str).map(str::to_ascii_lowercase).as_deref() {
                    None | Some("template") => None,
                    Some("raw") => Some(PayloadMode::Raw),
                    Some(other) => {
                        return Err(err("config.payload_mode", format!("`{other}` is not template or raw")));
                    }
                };
            let headers = c
                .get("headers")
                .and_then(Json::as_object)
                .map(|h| {
                    h.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect()
                })
                .unwrap_or_default();
            spec.webhook = Some(WebhookTrigger {
                url: None,
                url_secret_ref: Some(url),
                method,
                headers,
                secret_ref: signing,
                payload_mode,
            });
            &["url", "method", "secret", "headers", "message", "payload_mode", "retry_policy"]
        }
        "email" => {
            let port = c.get("port").and_then(Json::as_u64).map(|p| p as u16);
            spec.email = Some(EmailTrigger {
                host: str_field(c, "host", "config.")?.to_string(),
                port,
                tls: Some(SmtpTls::ImplicitTls),
                username_secret_ref: c
                    .get("username")
                    .filter(|x| !x.is_null())
                    .map(|_| secret("username", "username"))
                    .transpose()?,
                password_secret_ref: c
                    .get("password")
                    .filter(|x| !x.is_null())
                    .map(|_| secret("password", "password"))
                    .transpose()?,
                sender: str_field(c, "sender", "config.")?.to_string(),
                recipients: c
                    .get("recipients")
                    .and_then(Json::as_array)
                    .ok_or_else(|| err("config.recipients", "is missing or not an array"))?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect(),
            });
            &["host", "port", "username", "password", "message", "sender", "recipients", "retry_policy"]
        }
        "script" => {
            let language = str_field(c, "language", "config.")?;
            spec.script = Some(ScriptSpec {
                language: script_language(language).ok_or_else(|| {
                    err("config.language", format!("`{language}` is not Python, JavaScript or Bash"))
                })?,
                source: Some(String::new()),
                source_from: None,
                arguments: c
                    .get("arguments")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
                timeout: Some(DurationString::new(format!(
                    "{}ms",
                    c.get("timeout_ms").and_then(Json::as_u64).unwrap_or(1000)
                ))),
            });
            script_path = Some(str_field(c, "script_path", "config.")?.to_string());
            &["language", "script_path", "arguments", "timeout_ms"]
        }
        other => {
            return Err(err(
                "trigger_type",
                format!("`{other}` is not slack, discord, telegram, webhook, email or script"),
            ));
        }
    };
    if let Some(r) = c.get("retry_policy").filter(|r| !r.is_null()) {
        spec.retry_policy = Some(RetryPolicy {
            max_retries: r.get("max_retries").and_then(Json::as_u64).map(|x| x as u32),
            base_for_backoff: r.get("base_for_backoff").and_then(Json::as_u64).map(|x| x as u32),
            initial_backoff: r
                .get("initial_backoff")
                .map(|d| duration(d, "config.retry_policy.initial_backoff"))
                .transpose()?
                .map(DurationString::new),
            max_backoff: r
                .get("max_backoff")
                .map(|d| duration(d, "config.retry_policy.max_backoff"))
                .transpose()?
                .map(DurationString::new),
            jitter: match r.get("jitter").and_then(Json::as_str).map(str::to_ascii_lowercase).as_deref() {
                None => None,
                Some("full") => Some(Jitter::Full),
                Some("none") => Some(Jitter::None),
                Some(other) => {
                    return Err(err("config.retry_policy.jitter", format!("`{other}` is not full or none")));
                }
            },
            // upstream has no outage retries; an import gets ours (docs/monitors.md, Triggers)
            retry_for: None,
        });
    }
    let mut unsupported = unknown_fields(c, "config.", known);
    unsupported.extend(unknown_fields(v, "", &["name", "trigger_type", "config"]));
    Ok(ImportedTrigger {
        name: kube_name(id),
        display_name: v.get("name").and_then(Json::as_str).unwrap_or(id).to_string(),
        spec,
        secrets,
        script_path,
        unsupported,
    })
}

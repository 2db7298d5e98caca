//! Delivery of a rendered notification to its channel. Failures are transient (network errors,
//! timeouts, HTTP 408/429/5xx, temporary SMTP errors, failing scripts: retried) or permanent (other
//! HTTP 4xx, permanent SMTP errors, refused destinations, missing credentials: dead-lettered at
//! once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_crds::trigger::{HttpMethod, PayloadMode, SmtpTls};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::destination::{DestinationPolicy, GuardedResolver};
use super::payload;
pub use super::payload::Markup;
use crate::config::ResolvedTrigger;
use crate::script::{RunFor, ScriptRunner, script_input};

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
    /// A script trigger that failed (retried: a script may fail for a while).
    #[error("script: {0}")]
    Script(crate::script::ScriptError),
}

/// A credential that does not resolve: permanent, unless it cannot be read *yet*.
impl From<chainwatch_core::config::RefProblem> for DeliveryError {
    fn from(p: chainwatch_core::config::RefProblem) -> Self {
        if p.is_transient() {
            DeliveryError::Transient(p.to_string())
        } else {
            DeliveryError::Permanent(p.to_string())
        }
    }
}

impl DeliveryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DeliveryError::Transient(_) | DeliveryError::Script(_))
    }

    /// Condition reason of a failed delivery (the Trigger's `Delivering`).
    pub fn reason(&self) -> &'static str {
        match self {
            DeliveryError::Transient(_) => "DeliveryFailed",
            DeliveryError::Permanent(_) => "DeliveryRejected",
            DeliveryError::Script(e) => e.reason(),
        }
    }
}

/// A notification ready to send.
pub struct Notification<'a> {
    /// The title and body in the channel's markup (values from the chain escaped for it).
    pub title: String,
    pub body: String,
    /// The body as plain text (an email's text part).
    pub plain: String,
    /// Upstream's JSON of the match (raw webhooks, scripts).
    pub raw: &'a Value,
    pub idempotency_key: &'a str,
    /// Whom a script trigger runs for.
    pub run_for: &'a RunFor,
    /// Set when this retracts the notification of `idempotency_key` (its block was replaced by a
    /// reorg): chat and email send this text; webhooks the same payload with `status: retracted`.
    pub retraction: Option<Text>,
    /// `seen` or `final` for a Monitor told at both: webhooks say which (`phase`, header).
    pub phase: Option<chainwatch_crds::NotifyPhase>,
}

/// A title and body in the channel's markup, and the body as plain text.
pub struct Text {
    pub title: String,
    pub body: String,
    pub plain: String,
}

impl Notification<'_> {
    /// What chat and email show: the notification, or its retraction.
    pub fn shown(&self) -> (&str, &str, &str) {
        match &self.retraction {
            Some(r) => (&r.title, &r.body, &r.plain),
            None => (&self.title, &self.body, &self.plain),
        }
    }
}

/// Where notifications go instead of their channels in a dry run (`chainwatch dev --dry-notify`).
pub type DrySink = Arc<dyn Fn(&ResolvedTrigger, &Notification<'_>) + Send + Sync>;

/// The channels, with their clients.
pub struct Channels {
    http: reqwest::Client,
    policy: Arc<DestinationPolicy>,
    scripts: ScriptRunner,
    smtp: Mutex<HashMap<String, AsyncSmtpTransport<Tokio1Executor>>>,
    dry: Option<DrySink>,
}

const USER_AGENT: &str = concat!("chainwatch/", env!("CARGO_PKG_VERSION"));

impl Channels {
    pub fn new(policy: DestinationPolicy, scripts: ScriptRunner) -> Self {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(policy.clone())))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(USER_AGENT)
            // a redirect could lead anywhere the destination policy forbids: none is followed
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(16)
            .build()
            .expect("building an HTTP client");
        Self { http, policy, scripts, smtp: Mutex::default(), dry: None }
    }

    /// Channels that hand every notification to `sink` instead of sending it.
    pub fn dry_run(sink: DrySink) -> Self {
        Self { dry: Some(sink), ..Self::new(DestinationPolicy::default(), ScriptRunner::default()) }
    }

    /// Sends a notification through a trigger.
    pub async fn send(&self, trigger: &ResolvedTrigger, n: &Notification<'_>) -> Result<(), DeliveryError> {
        if let Some(sink) = &self.dry {
            sink(trigger, n);
            return Ok(());
        }
        let secret = |r| trigger.secret(r).map(str::to_string).map_err(DeliveryError::from);
        let spec = &trigger.spec;
        let (title, body, _) = n.shown();
        if let Some(s) = &spec.slack {
            return self
                .post_json(&secret(&s.webhook_url_secret_ref)?, &payload::slack(title, body), &[])
                .await;
        }
        if let Some(d) = &spec.discord {
            return self
                .post_json(&secret(&d.webhook_url_secret_ref)?, &payload::discord(title, body), &[])
                .await;
        }
        if let Some(t) = &spec.telegram {
            let token = secret(&t.token_secret_ref)?;
            let base = t.api_url.as_deref().unwrap_or("https://api.telegram.org").trim_end_matches('/');
            let url = format!("{base}/bot{token}/sendMessage");
            return self
                .post_json(&url, &payload::telegram(&t.chat_id, title, body, t.disable_web_preview), &[])
                .await;
        }
        if let Some(w) = &spec.webhook {
            let url = match (&w.url, &w.url_secret_ref) {
                (Some(u), _) => u.clone(),
                (None, Some(r)) => secret(r)?,
                (None, None) => return Err(DeliveryError::Permanent("webhook has no url".into())),
            };
            let mut body = match w.payload_mode.unwrap_or_default() {
                PayloadMode::Template => payload::webhook(&n.title, &n.body),
                PayloadMode::Raw => n.raw.clone(),
            };
            let mut headers: Vec<(String, String)> =
                vec![("Idempotency-Key".into(), n.idempotency_key.to_string())];
            if let Some(phase) = n.phase {
                payload::phased(&mut body, Some(phase));
                headers.push((payload::PHASE_HEADER.into(), phase.as_str().into()));
            }
            if n.retraction.is_some() {
                payload::retracted(&mut body);
                headers.push((payload::STATUS_HEADER.into(), payload::RETRACTED.into()));
            }
            if let Some(r) = &w.secret_ref {
                let key = secret(r)?;
                if key.is_empty() {
                    return Err(DeliveryError::Permanent("the webhook signing secret is empty".into()));
                }
                let ts = chainwatch_platform::codec::now_ms();
                headers.push(("X-Signature".into(), payload::signature(&key, &body, ts)));
                headers.push(("X-Timestamp".into(), ts.to_string()));
            }
            headers.extend(w.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            let method = match w.method.unwrap_or_default() {
                HttpMethod::Post => reqwest::Method::POST,
                HttpMethod::Put => reqwest::Method::PUT,
                HttpMethod::Patch => reqwest::Method::PATCH,
                HttpMethod::Get => reqwest::Method::GET,
                HttpMethod::Delete => reqwest::Method::DELETE,
            };
            return self.http_send(method, &url, &body, &headers).await;
        }
        if let Some(e) = &spec.email {
            return self.email(trigger, e, n).await;
        }
        if spec.script.is_some() {
            let script = match &trigger.script {
                Some(Ok(s)) => s,
                Some(Err(e)) => return Err(DeliveryError::Permanent(e.to_string())),
                None => return Err(DeliveryError::Permanent("script trigger without a script".into())),
            };
            let out = self
                .scripts
                .run(script, &script_input(n.raw, &script.arguments), n.run_for)
                .await
                .map_err(DeliveryError::Script)?;
            return match out.exit_code {
                Some(0) => Ok(()),
                code => Err(DeliveryError::Script(crate::script::ScriptError::Failed {
                    code,
                    stderr: out.stderr.chars().take(300).collect(),
                })),
            };
        }
        Err(DeliveryError::Permanent("the trigger has no channel".into()))
    }

    async fn post_json(
        &self,
        url: &str,
        body: &Value,
        headers: &[(String, String)],
    ) -> Result<(), DeliveryError> {
        self.http_send(reqwest::Method::POST, url, body, headers).await
    }

    async fn http_send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &Value,
        headers: &[(String, String)],
    ) -> Result<(), DeliveryError> {
        let parsed: reqwest::Url =
            url.parse().map_err(|e| DeliveryError::Permanent(format!("invalid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DeliveryError::Permanent(format!("unsupported URL scheme {}", parsed.scheme())));
        }
        self.policy.check_url(&parsed).map_err(DeliveryError::Permanent)?;
        if let Some(host) =
            parsed.host_str().filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
        {
            let port = parsed.port_or_known_default().unwrap_or(443);
            self.policy.resolve(host, port).await.map_err(DeliveryError::Permanent)?;
        }
        let mut req = self.http.request(method, parsed).header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.body(serde_json::to_vec(body).expect("JSON serializes")).send().await {
            // the URL (a webhook's, a bot token's) stays out of the message
            Err(e) if e.is_timeout() => {
                Err(DeliveryError::Transient(format!("timed out: {}", e.without_url())))
            }
            Err(e) => Err(DeliveryError::Transient(format!("request failed: {}", e.without_url()))),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Ok(());
                }
                if status.is_redirection() {
                    let to = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .map(chainwatch_platform::redact::endpoint)
                        .unwrap_or_else(|| "somewhere".into());
                    return Err(DeliveryError::Permanent(format!(
                        "HTTP {status}: the receiver redirects to {to}; chainwatch follows no redirect (each hop would have to pass the destination policy): point the trigger at the final URL"
                    )));
                }
                let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                let msg = format!("HTTP {status}: {text}");
                if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
                    Err(DeliveryError::Transient(msg))
                } else {
                    Err(DeliveryError::Permanent(msg))
                }
            }
        }
    }

    async fn email(
        &self,
        trigger: &ResolvedTrigger,
        e: &chainwatch_crds::trigger::EmailTrigger,
        n: &Notification<'_>,
    ) -> Result<(), DeliveryError> {
        let tls = e.tls.unwrap_or_default();
        let port = e.port.unwrap_or(match tls {
            SmtpTls::ImplicitTls => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        });
        // connect to an address the policy permitted, not to whatever the name resolves to next
        let addr = self.policy.resolve(&e.host, port).await.map_err(DeliveryError::Permanent)?[0];
        let user = e
            .username_secret_ref
            .as_ref()
            .map(|r| trigger.secret(r).map(str::to_string))
            .transpose()
            .map_err(DeliveryError::from)?;
        let pass = e
            .password_secret_ref
            .as_ref()
            .map(|r| trigger.secret(r).map(str::to_string))
            .transpose()
            .map_err(DeliveryError::from)?;
        let cache_key = format!("{}:{addr}:{tls:?}:{}", e.host, user.as_deref().unwrap_or(""));
        let transport = {
            let mut cache = self.smtp.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&cache_key) {
                Some(t) => t.clone(),
                None => {
                    // the certificate is checked against the host name; the connection goes to `addr`
                    let params = || {
                        TlsParameters::new(e.host.clone())
                            .map_err(|err| DeliveryError::Permanent(format!("SMTP {}: {err}", e.host)))
                    };
                    let security = match tls {
                        SmtpTls::ImplicitTls => Tls::Wrapper(params()?),
                        SmtpTls::StartTls => Tls::Required(params()?),
                        SmtpTls::None => Tls::None,
                    };
                    let mut builder =
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
                            .port(port)
                            .tls(security)
                            .timeout(Some(Duration::from_secs(30)));
                    if let (Some(u), Some(p)) = (&user, &pass) {
                        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                    }
                    let t = builder.build();
                    cache.insert(cache_key, t.clone());
                    t
                }
            }
        };
        let from: Mailbox = e
            .sender
            .parse()
            .map_err(|err| DeliveryError::Permanent(format!("sender {}: {err}", e.sender)))?;
        let (title, body, plain) = n.shown();
        let mut message = lettre::Message::builder().from(from).subject(title.replace(['\r', '\n'], " "));
        for r in &e.recipients {
            message = message
                .to(r.parse().map_err(|err| DeliveryError::Permanent(format!("recipient {r}: {err}")))?);
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(plain.to_string(), payload::email_html(body)))
            .map_err(|err| DeliveryError::Permanent(format!("building the email: {err}")))?;
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {err}"))),
            Err(err) => Err(DeliveryError::Transient(format!("SMTP: {err}"))),
        }
    }
}

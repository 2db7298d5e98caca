//! The RPC pool: several JSON-RPC endpoints of one network.
//!
//! * **Weighted load balancing**: each request goes to an endpoint drawn in proportion to its
//!   weight among the healthy ones (weight 0 disables an endpoint). Upstream only used weights as a
//!   priority order.
//! * **Circuit breaker** per endpoint: after 3 consecutive failures it is left out for a cool-down
//!   (5 s, doubling up to 60 s); then one request probes it.
//! * **Retries**: a failed request is retried on another endpoint when there is one, with
//!   exponential backoff and full jitter, until every endpoint failed `attempts_per_endpoint` times.
//! * **Error classes** (metric label, and whether to rotate as upstream does): network errors,
//!   timeouts, HTTP 408/429/5xx and 400/410, JSON-RPC error envelopes, malformed responses (neither
//!   `result` nor `error`), `null` results where a value is required.
//! * **Batching**: several calls in one HTTP request (JSON-RPC batch).
//! * **Chain identity** ([`identity`]): an endpoint is asked which chain it serves before its first
//!   use and every few minutes while used; one of another chain is out of rotation, so nothing of
//!   another chain is ever fetched from it.

pub mod breaker;
pub mod identity;
pub mod metrics;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainwatch_platform::Backoff;
use rand::Rng;
use serde_json::{Value, json};

use breaker::Breaker;
use identity::{Checked, Identity};
pub use metrics::RpcMetrics;

pub use chainwatch_core::config::Endpoint;

/// Why a call failed, by class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("{endpoint}: request timed out after {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("{endpoint}: connection failed: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{endpoint}: HTTP {status}")]
    Http { endpoint: String, status: u16 },
    #[error("{endpoint}: JSON-RPC error {code}: {message}")]
    JsonRpc { endpoint: String, code: i64, message: String },
    #[error("{endpoint}: malformed response: {message}")]
    Malformed { endpoint: String, message: String },
    #[error("{endpoint}: `{method}` returned null")]
    NullResult { endpoint: String, method: String },
    #[error("{endpoint} serves {what} {found}, the Network says {expected}: it is out of rotation")]
    WrongChain { endpoint: String, what: &'static str, expected: String, found: String },
    #[error("no RPC endpoint is enabled (every weight is 0)")]
    NoEndpoints,
    #[error("every endpoint failed; last error: {0}")]
    Exhausted(Box<RpcError>),
}

impl RpcError {
    /// Every [`RpcError::class`] (metrics expose each at zero).
    pub const CLASSES: [&'static str; 10] = [
        "timeout",
        "connect",
        "rate_limited",
        "http_5xx",
        "http_4xx",
        "jsonrpc",
        "malformed",
        "null_result",
        "wrong_chain",
        "no_endpoints",
    ];

    /// Metric label of the error class.
    pub fn class(&self) -> &'static str {
        match self {
            RpcError::Timeout { .. } => "timeout",
            RpcError::Connect { .. } => "connect",
            RpcError::Http { status: 429, .. } => "rate_limited",
            RpcError::Http { status, .. } if *status >= 500 => "http_5xx",
            RpcError::Http { .. } => "http_4xx",
            RpcError::JsonRpc { .. } => "jsonrpc",
            RpcError::Malformed { .. } => "malformed",
            RpcError::NullResult { .. } => "null_result",
            RpcError::WrongChain { .. } => "wrong_chain",
            RpcError::NoEndpoints => "no_endpoints",
            RpcError::Exhausted(inner) => inner.class(),
        }
    }

    /// The JSON-RPC error code, if this is (or wraps) one.
    pub fn jsonrpc_code(&self) -> Option<i64> {
        match self {
            RpcError::JsonRpc { code, .. } => Some(*code),
            RpcError::Exhausted(inner) => inner.jsonrpc_code(),
            _ => None,
        }
    }

    /// Whether this is (or wraps) an endpoint of another chain.
    pub fn is_wrong_chain(&self) -> bool {
        match self {
            RpcError::WrongChain { .. } => true,
            RpcError::Exhausted(inner) => inner.is_wrong_chain(),
            _ => false,
        }
    }

    /// Message of a JSON-RPC error, if this is one.
    pub fn jsonrpc_message(&self) -> Option<&str> {
        match self {
            RpcError::JsonRpc { message, .. } => Some(message),
            RpcError::Exhausted(inner) => inner.jsonrpc_message(),
            _ => None,
        }
    }
}

/// A call of a batch.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: &'static str,
    pub params: Value,
    /// Whether `null` is an acceptable result (otherwise it counts as an error of the endpoint).
    pub allow_null: bool,
}

impl Call {
    pub fn new(method: &'static str, params: Value) -> Self {
        Self { method, params, allow_null: false }
    }
}

struct Member {
    config: Endpoint,
    /// host[:port] only: URLs often carry API keys in their path.
    label: String,
    breaker: Breaker,
    /// Which chain it serves, as far as known.
    checked: Mutex<Checked>,
    /// Held while the endpoint is asked for its chain (one question at a time).
    asking: tokio::sync::Mutex<()>,
}

impl Member {
    fn checked(&self) -> Checked {
        self.checked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_checked(&self, c: Checked) -> Checked {
        std::mem::replace(&mut *self.checked.lock().unwrap_or_else(|p| p.into_inner()), c)
    }
}

/// What the pool knows about its endpoints' chain (for the `EndpointsVerified` condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityReport {
    /// "chain id", "network passphrase".
    pub what: &'static str,
    /// The value every endpoint must answer (the Network's, or the first endpoint's).
    pub expected: Option<String>,
    /// Endpoints verified to serve it.
    pub verified: Vec<String>,
    /// Endpoints of another chain: (label, what they serve).
    pub wrong: Vec<(String, String)>,
    /// Enabled endpoints.
    pub enabled: usize,
}

/// Retry settings.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Attempts per enabled endpoint before a call fails.
    pub attempts_per_endpoint: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { backoff: Backoff::default(), attempts_per_endpoint: 3 }
    }
}

/// The pool.
#[derive(Clone)]
pub struct RpcPool {
    inner: Arc<Inner>,
}

struct Inner {
    network: String,
    endpoints: Vec<Member>,
    http: reqwest::Client,
    retry: RetryPolicy,
    metrics: RpcMetrics,
    identity: Option<Identity>,
    /// The first answer, when the Network names no expected value.
    reference: Mutex<Option<String>>,
}

/// `host[:port]` of a URL, for labels and logs.
pub fn endpoint_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => "unknown".into(),
        },
        Err(_) => "invalid-url".into(),
    }
}

impl RpcPool {
    pub fn new(network: &str, endpoints: Vec<Endpoint>, retry: RetryPolicy, metrics: RpcMetrics) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build()
            .expect("building an HTTP client");
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let endpoints = endpoints
            .into_iter()
            .map(|config| {
                let host = endpoint_label(&config.url);
                let n = seen.entry(host.clone()).or_default();
                *n += 1;
                let label = if *n > 1 { format!("{host}#{n}") } else { host };
                metrics.endpoint(network, &label);
                Member {
                    config,
                    label,
                    breaker: Breaker::default(),
                    checked: Mutex::default(),
                    asking: tokio::sync::Mutex::new(()),
                }
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                network: network.to_string(),
                endpoints,
                http,
                retry,
                metrics,
                identity: None,
                reference: Mutex::new(None),
            }),
        }
    }

    /// The same pool, checking that every endpoint serves the chain `identity` names before it is
    /// used (call before the pool is shared).
    pub fn verifying(mut self, identity: Identity) -> Self {
        Arc::get_mut(&mut self.inner).expect("verifying() is called on a new pool").identity = Some(identity);
        self
    }

    /// What is known about the endpoints' chain; `None` when the pool does not check it.
    pub fn identity_report(&self) -> Option<IdentityReport> {
        let id = self.inner.identity.as_ref()?;
        let mut report = IdentityReport {
            what: id.what,
            expected: id.expected.clone().or_else(|| self.reference()),
            verified: vec![],
            wrong: vec![],
            enabled: 0,
        };
        for ep in self.inner.endpoints.iter().filter(|e| e.config.weight > 0) {
            report.enabled += 1;
            match ep.checked() {
                Checked::Never => {}
                Checked::Serves { .. } => report.verified.push(ep.label.clone()),
                Checked::Wrong { found, .. } => report.wrong.push((ep.label.clone(), found)),
            }
        }
        Some(report)
    }

    fn reference(&self) -> Option<String> {
        self.inner.reference.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks endpoint `i` which chain it serves, unless that is known and recent. `Err` when it
    /// serves another chain (it is then out of rotation) or did not answer.
    async fn verify(&self, i: usize) -> Result<(), RpcError> {
        let inner = &self.inner;
        let Some(id) = &inner.identity else { return Ok(()) };
        let ep = &inner.endpoints[i];
        let _asking = ep.asking.lock().await;
        let now = Instant::now();
        let wrong = |found: String, expected: String| RpcError::WrongChain {
            endpoint: ep.label.clone(),
            what: id.what,
            expected,
            found,
        };
        match ep.checked() {
            c if c.trusted(id, now) => return Ok(()),
            Checked::Wrong { found, expected, .. } if ep.checked().excluded(id, now) => {
                return Err(wrong(found, expected));
            }
            _ => {}
        }
        let call = Call::new(id.method, id.params.clone());
        let answer = self.send(i, std::slice::from_ref(&call)).await?.pop().expect("one result per call");
        let reference = self.reference();
        match identity::judge(id, reference.as_deref(), &answer) {
            Ok(found) => {
                if id.expected.is_none() && reference.is_none() {
                    *inner.reference.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                }
                let before = ep.set_checked(Checked::Serves { at: now });
                if matches!(before, Checked::Wrong { .. }) {
                    tracing::info!(network = %inner.network, endpoint = %ep.label, what = id.what, %found, "the endpoint serves the Network's chain again: back in rotation");
                } else if before == Checked::Never {
                    tracing::debug!(network = %inner.network, endpoint = %ep.label, what = id.what, %found, "endpoint verified");
                }
                inner.metrics.serves_network(&inner.network, &ep.label, true);
                Ok(())
            }
            Err(found) => {
                let expected = id.expected.clone().or(reference).unwrap_or_default();
                let before = ep.set_checked(Checked::Wrong {
                    found: found.clone(),
                    expected: expected.clone(),
                    at: now,
                });
                if !matches!(before, Checked::Wrong { .. }) {
                    tracing::error!(network = %inner.network, endpoint = %ep.label, what = id.what, %found, %expected, "the endpoint serves another chain: taken out of rotation");
                }
                inner.metrics.serves_network(&inner.network, &ep.label, false);
                Err(wrong(found, expected))
            }
        }
    }

    /// The error when every enabled endpoint is out for serving another chain.
    fn all_wrong(&self) -> Option<RpcError> {
        let id = self.inner.identity.as_ref()?;
        let now = Instant::now();
        let mut first = None;
        for ep in self.inner.endpoints.iter().filter(|e| e.config.weight > 0) {
            match ep.checked() {
                Checked::Wrong { found, expected, at } if now.duration_since(at) < id.wrong_recheck => {
                    first.get_or_insert(RpcError::WrongChain {
                        endpoint: ep.label.clone(),
                        what: id.what,
                        expected,
                        found,
                    });
                }
                _ => return None,
            }
        }
        first
    }

    pub fn network(&self) -> &str {
        &self.inner.network
    }

    /// Labels of the endpoints (for status messages).
    pub fn endpoint_labels(&self) -> Vec<String> {
        self.inner.endpoints.iter().map(|e| e.label.clone()).collect()
    }

    /// Endpoints currently usable (enabled, not cut off by their breaker, not of another chain).
    pub fn healthy_endpoints(&self) -> usize {
        let now = Instant::now();
        (0..self.inner.endpoints.len())
            .filter(|&i| self.in_rotation(i, now) && self.inner.endpoints[i].breaker.available(now))
            .count()
    }

    /// Enabled and not out for serving another chain.
    fn in_rotation(&self, i: usize, now: Instant) -> bool {
        let ep = &self.inner.endpoints[i];
        ep.config.weight > 0 && self.inner.identity.as_ref().is_none_or(|id| !ep.checked().excluded(id, now))
    }

    /// Picks an endpoint by weight among the available ones not in `avoid`; falls back to the
    /// enabled endpoint whose breaker reopens first.
    fn pick(&self, avoid: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let eps = &self.inner.endpoints;
        let candidates: Vec<usize> =
            (0..eps.len()).filter(|&i| self.in_rotation(i, now) && eps[i].breaker.available(now)).collect();
        let preferred: Vec<usize> = candidates.iter().copied().filter(|i| !avoid.contains(i)).collect();
        let pool = if preferred.is_empty() { candidates } else { preferred };
        if pool.is_empty() {
            return (0..eps.len())
                .filter(|&i| self.in_rotation(i, now))
                .min_by_key(|&i| eps[i].breaker.reopens_at());
        }
        let total: u64 = pool.iter().map(|&i| u64::from(eps[i].config.weight)).sum();
        let mut draw = rand::rng().random_range(0..total);
        for &i in &pool {
            let w = u64::from(eps[i].config.weight);
            if draw < w {
                return Some(i);
            }
            draw -= w;
        }
        pool.last().copied()
    }

    /// One call.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        let mut out = self.batch(vec![Call::new(method, params)]).await?;
        Ok(out.pop().expect("one result per call"))
    }

    /// A call whose result may be `null` (e.g. a block not yet known).
    pub async fn call_nullable(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        let mut out = self.batch(vec![Call { method, params, allow_null: true }]).await?;
        Ok(out.pop().expect("one result per call"))
    }

    /// Several calls in one JSON-RPC batch request, retried as a whole; results in call order.
    pub async fn batch(&self, calls: Vec<Call>) -> Result<Vec<Value>, RpcError> {
        let inner = &self.inner;
        let enabled = inner.endpoints.iter().filter(|e| e.config.weight > 0).count();
        if enabled == 0 {
            return Err(RpcError::NoEndpoints);
        }
        let max_attempts = (enabled as u32 * inner.retry.attempts_per_endpoint).max(1);
        let mut tried: Vec<usize> = Vec::new();
        let mut last_err = None;
        for attempt in 0..max_attempts {
            let Some(i) = self.pick(&tried) else {
                return Err(self.all_wrong().unwrap_or(RpcError::NoEndpoints));
            };
            if let Some(prev) = tried.last()
                && *prev != i
            {
                let reason = last_err.as_ref().map_or("unknown", RpcError::class);
                inner.metrics.rotation(&inner.network, reason);
            }
            let verified = match self.verify(i).await {
                // another chain: out of rotation, not a failure of the breaker's kind; next one
                Err(e @ RpcError::WrongChain { .. }) => {
                    inner.metrics.error(&inner.network, &inner.endpoints[i].label, e.class());
                    if !tried.contains(&i) {
                        tried.push(i);
                    }
                    last_err = Some(e);
                    continue;
                }
                other => other,
            };
            let result = match verified {
                Ok(()) => self.send(i, &calls).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(results) => {
                    inner.endpoints[i].breaker.success();
                    return Ok(results);
                }
                Err(e) => {
                    let ep = &inner.endpoints[i];
                    ep.breaker.failure(Instant::now());
                    inner.metrics.error(&inner.network, &ep.label, e.class());
                    tracing::debug!(network = %inner.network, endpoint = %ep.label, attempt, error = %e, "RPC attempt failed");
                    if !should_retry(&e) {
                        return Err(e);
                    }
                    if !tried.contains(&i) {
                        tried.push(i);
                    }
                    if tried.len() >= enabled {
                        tried.clear(); // every endpoint had a go: start a new round after the backoff
                    }
                    last_err = Some(e);
                    tokio::time::sleep(inner.retry.backoff.delay(attempt)).await;
                }
            }
        }
        Err(RpcError::Exhausted(Box::new(last_err.expect("at least one attempt failed"))))
    }

    async fn send(&self, i: usize, calls: &[Call]) -> Result<Vec<Value>, RpcError> {
        let inner = &self.inner;
        let ep = &inner.endpoints[i];
        let label = || ep.label.clone();
        let body: Value = if calls.len() == 1 {
            json!({"jsonrpc": "2.0", "id": 0, "method": calls[0].method, "params": calls[0].params})
        } else {
            Value::Array(
                calls
                    .iter()
                    .enumerate()
                    .map(
                        |(id, c)| json!({"jsonrpc": "2.0", "id": id, "method": c.method, "params": c.params}),
                    )
                    .collect(),
            )
        };
        let method = if calls.len() == 1 { calls[0].method } else { "batch" };
        inner.metrics.request(&inner.network, &ep.label, method);
        let started = Instant::now();
        let response = inner.http.post(&ep.config.url).json(&body).timeout(ep.config.timeout).send().await;
        let result = async {
            let response = response.map_err(|e| {
                if e.is_timeout() {
                    RpcError::Timeout { endpoint: label(), after: ep.config.timeout }
                } else {
                    RpcError::Connect { endpoint: label(), message: e.without_url().to_string() }
                }
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(RpcError::Http { endpoint: label(), status: status.as_u16() });
            }
            let bytes = response.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    RpcError::Timeout { endpoint: label(), after: ep.config.timeout }
                } else {
                    RpcError::Connect { endpoint: label(), message: e.without_url().to_string() }
                }
            })?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| RpcError::Malformed {
                endpoint: label(),
                message: format!("not JSON ({e}): {}", preview(&bytes)),
            })?;
            let envelopes: Vec<Value> = match (calls.len(), value) {
                (1, Value::Array(mut a)) if a.len() == 1 => vec![a.remove(0)],
                (1, v @ Value::Object(_)) => vec![v],
                (n, Value::Array(mut a)) if a.len() == n => {
                    a.sort_by_key(|e| e.get("id").and_then(Value::as_u64).unwrap_or(u64::MAX));
                    a
                }
                (n, other) => {
                    return Err(RpcError::Malformed {
                        endpoint: label(),
                        message: format!(
                            "expected {n} responses, got {}",
                            preview(other.to_string().as_bytes())
                        ),
                    });
                }
            };
            envelopes
                .into_iter()
                .zip(calls)
                .map(|(env, call)| {
                    if let Some(err) = env.get("error") {
                        return Err(RpcError::JsonRpc {
                            endpoint: label(),
                            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                            message: err.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                        });
                    }
                    match env.get("result") {
                        None => Err(RpcError::Malformed {
                            endpoint: label(),
                            message: format!(
                                "neither result nor error: {}",
                                preview(env.to_string().as_bytes())
                            ),
                        }),
                        Some(Value::Null) if !call.allow_null => {
                            Err(RpcError::NullResult { endpoint: label(), method: call.method.to_string() })
                        }
                        Some(v) => Ok(v.clone()),
                    }
                })
                .collect()
        }
        .await;
        inner.metrics.latency(&inner.network, &ep.label, started.elapsed());
        if let Err(RpcError::Http { status: 429, .. }) = &result {
            inner.metrics.rate_limited(&inner.network, &ep.label);
        }
        result
    }
}

fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
    if bytes.len() > 120 { format!("{s}…") } else { s }
}

/// Whether to try again (elsewhere). Everything is retried except JSON-RPC errors that mean the
/// request itself is wrong for every endpoint (invalid params, method not found): the caller
/// decides about those (e.g. falling back to per-transaction receipts).
fn should_retry(e: &RpcError) -> bool {
    !matches!(e, RpcError::JsonRpc { code: -32601 | -32602, .. })
}

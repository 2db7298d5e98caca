//! Local notification receivers for tests: an HTTP server that records every request and answers
//! with a programmable sequence of statuses, and a minimal SMTP server that records every message.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A request the HTTP receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Wall-clock arrival, milliseconds since the Unix epoch (to compare with record timestamps).
    pub at_ms: u64,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct HttpState {
    requests: Vec<Received>,
    /// Requests answered with something else than 2xx.
    refused: Vec<Received>,
    /// Statuses to answer, in order; when empty, `default` is answered.
    script: VecDeque<u16>,
    default: u16,
    attempts: u64,
    /// How long each answer takes (a slow receiver).
    delay: Duration,
    /// Answer every request with `302 Found` to this location.
    redirect: Option<String>,
}

/// The HTTP receiver.
#[derive(Clone)]
pub struct HttpReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<HttpState>>,
}

async fn record(
    State(s): State<Arc<Mutex<HttpState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let redirect = s.lock().unwrap_or_else(|p| p.into_inner()).redirect.clone();
    if let Some(to) = redirect {
        s.lock().unwrap_or_else(|p| p.into_inner()).attempts += 1;
        return (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response();
    }
    answer(s, method, uri, headers, body).await.into_response()
}

async fn answer(
    s: Arc<Mutex<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = s.lock().unwrap_or_else(|p| p.into_inner()).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
    st.attempts += 1;
    let status = st.script.pop_front().unwrap_or(st.default);
    let ok = (200..300).contains(&status);
    let request = Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
        at_ms: chainwatch_platform::codec::now_ms(),
    };
    if ok {
        st.requests.push(request)
    } else {
        st.refused.push(request)
    }
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl HttpReceiver {
    /// Starts on 127.0.0.1, answering 200 to everything.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// Starts on another loopback address (e.g. 127.0.0.2: "internal", outside an allowlist of
    /// 127.0.0.1).
    pub async fn start_on(ip: &str) -> Self {
        let state = Arc::new(Mutex::new(HttpState { default: 200, ..Default::default() }));
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("binding a local port");
        let addr = listener.local_addr().expect("a local address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HttpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers these statuses first (e.g. `[500, 500, 500]`), then the default.
    pub fn answer_first(&self, statuses: &[u16]) {
        self.lock().script.extend(statuses.iter().copied());
    }

    /// Answers every request with a redirect to `location`.
    pub fn redirect_to(&self, location: &str) {
        self.lock().redirect = Some(location.into());
    }

    /// Takes `delay` to answer each request.
    pub fn answer_after(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The status answered when no scripted status is left.
    pub fn answer_always(&self, status: u16) {
        self.lock().default = status;
    }

    /// Requests answered with 2xx.
    pub fn received(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    /// Requests answered with something else than 2xx (failed attempts of a delivery).
    pub fn refused(&self) -> Vec<Received> {
        self.lock().refused.clone()
    }

    /// Every request, whatever it was answered.
    pub fn attempts(&self) -> u64 {
        self.lock().attempts
    }

    /// Waits until at least `n` requests were accepted.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A message the SMTP receiver got.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server (no TLS, no authentication required; AUTH is accepted).
#[derive(Clone)]
pub struct SmtpReceiver {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a local port");
        let addr = listener.local_addr().expect("a local address");
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 localhost ESMTP test\r\n").await;
                    let (mut from, mut to, mut data, mut in_data) =
                        (String::new(), Vec::new(), String::new(), false);
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                store.lock().unwrap_or_else(|p| p.into_inner()).push(Mail {
                                    from: from.clone(),
                                    to: to.clone(),
                                    data: std::mem::take(&mut data),
                                });
                                to.clear();
                                let _ = w.write_all(b"250 OK queued\r\n").await;
                            } else {
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                data.push('\n');
                            }
                            continue;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("HELO") {
                            b"250 localhost\r\n"
                        } else if upper.starts_with("AUTH") {
                            b"235 2.7.0 Authentication successful\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().trim_matches(['<', '>']).to_string();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                            b"250 OK\r\n"
                        } else if upper == "DATA" {
                            in_data = true;
                            b"354 End data with <CR><LF>.<CR><LF>\r\n"
                        } else if upper == "QUIT" {
                            let _ = w.write_all(b"221 Bye\r\n").await;
                            return;
                        } else {
                            b"250 OK\r\n"
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        Self { addr, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.mails();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

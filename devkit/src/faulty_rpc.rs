//! A JSON-RPC endpoint that misbehaves on command: it forwards to a real one (anvil) and, as set,
//! is down, claims another chain, answers a block whose parent hash does not match, or serves a
//! huge block. For tests of what the ingester does when an endpoint lies or fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How the endpoint behaves.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forwards every request.
    #[default]
    None,
    /// Answers every request with 503.
    Down,
    /// Forwards, but `eth_chainId` answers this id.
    ChainId(u64),
    /// Forwards, but block `n` (by number) comes with a parent hash of no block.
    WrongParent(u64),
    /// Forwards, but block `n` has this many more transactions, of `bytes` random calldata each,
    /// after its own (their receipts to match).
    Huge { block: u64, transactions: usize, bytes: usize },
}

#[derive(Default)]
struct Inner {
    fault: Mutex<Fault>,
    requests: AtomicU64,
    /// Requests for the block the fault is about.
    fault_hits: AtomicU64,
    /// Calls received, by method (a batch counts each call).
    calls: Mutex<std::collections::HashMap<String, u64>>,
}

/// The endpoint.
#[derive(Clone)]
pub struct FaultyRpc {
    pub addr: SocketAddr,
    upstream: String,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(2 + bytes * 2);
    s.push_str("0x");
    let mut x: u64 = rand_seed();
    for _ in 0..bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x & 0xff) as usize;
        s.push(char::from(b"0123456789abcdef"[b >> 4]));
        s.push(char::from(b"0123456789abcdef"[b & 15]));
    }
    s
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(7)
}

impl FaultyRpc {
    /// Starts in front of `upstream`, forwarding.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a local port");
        let addr = listener.local_addr().expect("a local address");
        let rpc = FaultyRpc {
            addr,
            upstream: upstream.into(),
            inner: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(handle).with_state(rpc.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        rpc
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        *self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Requests for the block the fault is about.
    pub fn fault_hits(&self) -> u64 {
        self.inner.fault_hits.load(Ordering::SeqCst)
    }

    /// Calls received of any method but those in `except`.
    pub fn calls_except(&self, except: &[&str]) -> u64 {
        let calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().filter(|(m, _)| !except.contains(&m.as_str())).map(|(_, n)| n).sum()
    }

    fn count(&self, request: &Value) {
        let mut calls = self.inner.calls.lock().unwrap_or_else(|p| p.into_inner());
        let one = std::slice::from_ref(request);
        for c in request.as_array().map_or(one, Vec::as_slice) {
            *calls.entry(c["method"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
    }

    fn fault(&self) -> Fault {
        self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn forward(&self, body: &Value) -> Option<Value> {
        let r = self.http.post(&self.upstream).json(body).send().await.ok()?;
        r.json().await.ok()
    }

    /// Applies the fault to one call's answer.
    fn doctor(&self, fault: &Fault, call: &Value, mut answer: Value) -> Value {
        let method = call["method"].as_str().unwrap_or_default();
        let number =
            call["params"][0].as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        match fault {
            Fault::ChainId(id) if method == "eth_chainId" => answer["result"] = json!(format!("{id:#x}")),
            Fault::WrongParent(n) if number == Some(*n) && method == "eth_getBlockByNumber" => {
                self.inner.fault_hits.fetch_add(1, Ordering::SeqCst);
                answer["result"]["parentHash"] = json!(format!("0x{}", "ab".repeat(32)));
            }
            Fault::Huge { block, transactions, bytes } if number == Some(*block) => {
                self.inner.fault_hits.fetch_add(1, Ordering::SeqCst);
                let r = &mut answer["result"];
                let hash = r["hash"].clone();
                // after the block's own transactions (their hashes from 0x…01 up never collide
                // with a real one): the real ones still match as on the chain
                let full = call["params"][1].as_bool() == Some(true);
                if method == "eth_getBlockByNumber"
                    && full
                    && let Some(txs) = r["transactions"].as_array_mut()
                {
                    let first = txs.len();
                    txs.extend((first..first + *transactions).map(|i| {
                        json!({"hash": format!("0x{:064x}", i + 1), "from": format!("0x{:040x}", 1), "to": format!("0x{:040x}", 2),
                            "input": random_hex(*bytes), "value": "0x0", "nonce": format!("{i:#x}"), "gas": "0x5208",
                            "gasPrice": "0x1", "transactionIndex": format!("{i:#x}"), "blockHash": hash, "blockNumber": format!("{block:#x}"), "type": "0x0"})
                    }));
                } else if method == "eth_getBlockReceipts"
                    && let Some(receipts) = r.as_array_mut()
                {
                    let hash = receipts.first().map(|x| x["blockHash"].clone()).unwrap_or(hash);
                    let first = receipts.len();
                    receipts.extend((first..first + *transactions).map(|i| {
                        json!({"transactionHash": format!("0x{:064x}", i + 1), "transactionIndex": format!("{i:#x}"), "blockHash": hash,
                            "blockNumber": format!("{block:#x}"), "from": format!("0x{:040x}", 1), "to": format!("0x{:040x}", 2),
                            "status": "0x1", "gasUsed": "0x5208", "cumulativeGasUsed": "0x5208", "logs": [], "logsBloom": format!("0x{}", "0".repeat(512)), "type": "0x0"})
                    }));
                }
            }
            _ => {}
        }
        answer
    }
}

async fn handle(State(rpc): State<FaultyRpc>, body: Bytes) -> Response {
    rpc.inner.requests.fetch_add(1, Ordering::SeqCst);
    let fault = rpc.fault();
    if fault == Fault::Down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    rpc.count(&request);
    let Some(answer) = rpc.forward(&request).await else {
        return (StatusCode::BAD_GATEWAY, "upstream failed").into_response();
    };
    let doctored = match (&request, answer) {
        (Value::Array(calls), Value::Array(answers)) => {
            // answers in call order, matched by id
            let mut out = Vec::new();
            for c in calls {
                let a = answers.iter().find(|a| a["id"] == c["id"]).cloned().unwrap_or(Value::Null);
                out.push(rpc.doctor(&fault, c, a));
            }
            Value::Array(out)
        }
        (call, answer) => rpc.doctor(&fault, call, answer),
    };
    (StatusCode::OK, axum::Json(doctored)).into_response()
}

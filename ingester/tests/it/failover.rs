//! Endpoint failures: one of two endpoints dead, answering 429 or malformed JSON. No block is lost,
//! traffic moves to the healthy endpoint, and the metrics show what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chainwatch_crds::ChainType;
use chainwatch_devkit::devnet::Anvil;

use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    TooManyRequests,
    Malformed,
    /// Malformed for the first `n` requests, then forwards.
    FlakyThenForward(u32),
}

#[derive(Clone)]
struct Proxy {
    target: String,
    mode: Mode,
    seen: Arc<AtomicU32>,
    http: reqwest::Client,
}

async fn handle(State(p): State<Proxy>, body: Bytes) -> Response {
    let n = p.seen.fetch_add(1, Ordering::SeqCst);
    match p.mode {
        Mode::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        Mode::Malformed => (StatusCode::OK, "<html>upstream error</html>").into_response(),
        Mode::FlakyThenForward(k) if n < k => {
            (StatusCode::OK, "{\"jsonrpc\":\"2.0\",\"id\":0,\"resu").into_response()
        }
        Mode::FlakyThenForward(_) => {
            let r = p
                .http
                .post(&p.target)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (StatusCode::OK, r.bytes().await.unwrap()).into_response()
        }
    }
}

async fn proxy(target: &str, mode: Mode) -> (String, Arc<AtomicU32>) {
    let seen = Arc::new(AtomicU32::new(0));
    let state = Proxy { target: target.to_string(), mode, seen: seen.clone(), http: reqwest::Client::new() };
    let app = Router::new().route("/", post(handle)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// The value of a counter line `name{labels…}` whose labels contain every `want` pair.
fn counter(metrics: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| want.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

async fn ingest_through(
    endpoints: Vec<chainwatch_ingester::rpc::Endpoint>,
    anvil: &Anvil,
    blocks_to_mine: u64,
) -> (String, Running) {
    anvil.mine(blocks_to_mine).await.unwrap();
    let head = anvil.block_number().await.unwrap();
    let network = network_name("it-failover");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, endpoints);
    rt.start = Some(1);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(head, Duration::from_secs(120)).await;
    let records = read_topic(&network, Duration::from_secs(30), |r| r.len() as u64 >= head).await;
    let numbers: Vec<u64> = blocks(&records).iter().map(|b| b.number()).collect();
    assert_eq!(numbers, (1..=head).collect::<Vec<_>>(), "no block lost or reordered");
    (network, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_429_loses_no_block_and_traffic_moves() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let (limited, seen) = proxy(&anvil.url, Mode::TooManyRequests).await;
    let (network, running) =
        ingest_through(vec![endpoint(&limited, 50), endpoint(&anvil.url, 50)], &anvil, 120).await;
    let m = running.metrics_text();
    running.stop().await;
    assert!(seen.load(Ordering::SeqCst) > 0, "the limited endpoint was tried");
    assert!(
        counter(
            &m,
            "chainwatch_rpc_rate_limited_total",
            &[("network", &network), ("endpoint", &host(&limited))]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        counter(&m, "chainwatch_rpc_rotations_total", &[("network", &network), ("reason", "rate_limited")])
            >= 1.0
    );
    assert!(
        counter(
            &m,
            "chainwatch_rpc_requests_total",
            &[("network", &network), ("endpoint", &host(&anvil.url))]
        ) >= 120.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_loses_no_block() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }; // the listener is dropped: connections are refused
    let (network, running) =
        ingest_through(vec![endpoint(&dead, 50), endpoint(&anvil.url, 50)], &anvil, 120).await;
    let m = running.metrics_text();
    running.stop().await;
    assert!(
        counter(
            &m,
            "chainwatch_rpc_errors_total",
            &[("network", &network), ("endpoint", &host(&dead)), ("class", "connect")]
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_retried_and_rotated_and_counted() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let (broken, _) = proxy(&anvil.url, Mode::Malformed).await;
    let (network, running) =
        ingest_through(vec![endpoint(&broken, 50), endpoint(&anvil.url, 50)], &anvil, 80).await;
    let m = running.metrics_text();
    running.stop().await;
    assert!(
        counter(
            &m,
            "chainwatch_rpc_errors_total",
            &[("network", &network), ("endpoint", &host(&broken)), ("class", "malformed")]
        ) >= 1.0,
        "{m}"
    );
    assert!(
        counter(&m, "chainwatch_rpc_rotations_total", &[("network", &network), ("reason", "malformed")])
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_flaky_endpoint_is_retried_until_it_answers() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let (flaky, seen) = proxy(&anvil.url, Mode::FlakyThenForward(5)).await;
    let (network, running) = ingest_through(vec![endpoint(&flaky, 100)], &anvil, 30).await;
    let m = running.metrics_text();
    running.stop().await;
    assert!(seen.load(Ordering::SeqCst) > 5);
    assert!(
        counter(&m, "chainwatch_rpc_errors_total", &[("network", &network), ("class", "malformed")]) >= 5.0,
        "{m}"
    );
}

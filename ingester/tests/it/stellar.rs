//! Stellar ingestion replaying recorded RPC data (`../shared/fixtures`) through a test JSON-RPC
//! server: real ledger headers (continuity from header XDR), transactions paged with cursors,
//! contract events, and the retention-window error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chainwatch_core::block::Block;
use chainwatch_crds::ChainType;
use serde_json::{Value, json};

use crate::common::*;

/// The recorded ledgers are of the Stellar testnet.
const TESTNET_PASSPHRASE: &str = "Test SDF Network ; September 2015";

fn fixtures() -> PathBuf {
    std::env::var("CHAINWATCH_FIXTURES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../shared/fixtures")
    })
}

fn read(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(rel)).unwrap()).unwrap()
}

#[derive(Default)]
struct Chain {
    ledgers: BTreeMap<u64, Value>,
    transactions: BTreeMap<u64, Vec<Value>>,
    events: BTreeMap<u64, Vec<Value>>,
}

/// Recorded ledgers: 36233–36234 (consecutive testnet headers), 172627–172628 and 808663 (with its
/// two recorded transactions) from upstream's fixtures, and events of ledger 3727845 attached to a
/// synthetic header-less ledger are not served.
fn recorded() -> Chain {
    let mut c = Chain::default();
    for l in read("stellar-rpc/Ledgers.json")["GetLedgersResult"]["value"]["ledgers"].as_array().unwrap() {
        c.ledgers.insert(l["sequence"].as_u64().unwrap(), l.clone());
    }
    for b in read("oz-monitor/stellar/blocks.json").as_array().unwrap() {
        let l = &b["Stellar"];
        c.ledgers.insert(l["sequence"].as_u64().unwrap(), l.clone());
    }
    for t in read("oz-monitor/stellar/transactions.json").as_array().unwrap() {
        let n = t["ledger"].as_u64().unwrap();
        if c.ledgers.contains_key(&n) {
            c.transactions.entry(n).or_default().push(t.clone());
        }
    }
    c
}

fn rpc_error(id: &Value, code: i64, message: String) -> Json<Value> {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

async fn handle(State(chain): State<Arc<Chain>>, Json(req): Json<Value>) -> Json<Value> {
    let id = req["id"].clone();
    let p = &req["params"];
    let (oldest, latest) = (*chain.ledgers.keys().next().unwrap(), *chain.ledgers.keys().last().unwrap());
    let start = p["startLedger"].as_u64();
    if let Some(s) = start
        && !chain.ledgers.contains_key(&s)
    {
        return rpc_error(
            &id,
            -32600,
            format!("startLedger must be within the ledger range: {oldest} - {latest}"),
        );
    }
    // cursors are "<ledger>:<index>"
    let cursor = p["pagination"]["cursor"]
        .as_str()
        .and_then(|c| c.split_once(':'))
        .map(|(l, i)| (l.parse::<u64>().unwrap(), i.parse::<usize>().unwrap()));
    let result = match req["method"].as_str().unwrap() {
        "getNetwork" => json!({"passphrase": TESTNET_PASSPHRASE, "protocolVersion": 23}),
        "getLatestLedger" => json!({"id": "x", "protocolVersion": 23, "sequence": latest}),
        "getLedgers" => {
            json!({"ledgers": [chain.ledgers[&start.unwrap()]], "latestLedger": latest, "oldestLedger": oldest, "cursor": start.unwrap().to_string()})
        }
        "getTransactions" | "getEvents" => {
            let (map, field) = if req["method"] == "getTransactions" {
                (&chain.transactions, "transactions")
            } else {
                (&chain.events, "events")
            };
            let (ledger, index) = cursor.unwrap_or_else(|| (start.unwrap(), 0));
            // one entry per page, to exercise paging; then the next ledger's first entry
            let items: Vec<Value> =
                map.range(ledger..).flat_map(|(_, v)| v.iter().cloned()).skip(index).take(1).collect();
            let next_cursor = format!("{ledger}:{}", index + 1);
            json!({field: items, "latestLedger": latest, "oldestLedger": oldest, "cursor": next_cursor})
        }
        other => return rpc_error(&id, -32601, format!("method {other} not found")),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

async fn server(chain: Chain) -> String {
    let app = Router::new().route("/", post(handle)).with_state(Arc::new(chain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn ingest(url: &str, from: u64, to: u64) -> Vec<Block> {
    let network = network_name("it-stellar");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Stellar, vec![endpoint(url, 100)]);
    rt.network_passphrase = Some(TESTNET_PASSPHRASE.into());
    rt.start = Some(from);
    rt.stop_at = Some(to);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(to, Duration::from_secs(60)).await;
    running.stop().await;
    let n = (to - from + 1) as usize;
    let records = read_topic(&network, Duration::from_secs(30), |r| r.len() >= n).await;
    blocks(&records).into_iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_testnet_ledgers_are_ingested_in_sequence() {
    let url = server(recorded()).await;
    let ledgers = ingest(&url, 36233, 36234).await;
    assert_eq!(ledgers.iter().map(Block::number).collect::<Vec<_>>(), [36233, 36234]);
    let (Block::Stellar(a), Block::Stellar(b)) = (&ledgers[0], &ledgers[1]) else {
        panic!("stellar ledgers")
    };
    assert_eq!(a.hash, "434de11b427aa4b6f8cda259ac2111a6aa148d2ab6b4c7affe864e94a9f4bd80");
    assert_eq!(b.previous_hash, a.hash, "the header XDR of 36234 names 36233 as its parent");
    assert_eq!(a.close_time, 1734032457);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_with_transactions_is_paged_in_full() {
    let url = server(recorded()).await;
    let ledgers = ingest(&url, 808663, 808663).await;
    let Block::Stellar(l) = &ledgers[0] else { panic!() };
    let mut hashes: Vec<&str> = l.transactions.iter().map(|t| t.hash.as_str()).collect();
    hashes.sort();
    assert_eq!(
        hashes,
        [
            "2c89fc3311bc275415ed6a764c77d7b0349cb9f4ce37fd2bbfc6604920811501",
            "80fec04b989895a4222d9985fbf153d253e3e2cbc1da45ef414db96a277b99be"
        ]
    );
    // the envelope decodes: increment() on CDMZ6LU6…
    let tx = l.transactions.iter().find(|t| t.hash.starts_with("80fec04b")).unwrap();
    let decoded = chainwatch_core::stellar::decode::transaction(tx).unwrap();
    assert!(decoded.operations.iter().any(
        |op| matches!(&op.kind, chainwatch_core::stellar::decode::OpKind::Invoke { contract, function, .. }
        if contract == "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX" && function == "increment")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_outside_the_retention_window_is_reported_not_skipped() {
    let url = server(recorded()).await;
    let network = network_name("it-stellar-retention");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Stellar, vec![endpoint(&url, 100)]);
    rt.start = Some(100); // not served
    let mut running = start(rt, dir.path()).await;
    let s = running.wait_not_progressing("OutsideRetentionWindow", Duration::from_secs(60)).await;
    assert!(s.progressing.message.contains("retention window"), "{}", s.progressing.message);
    assert_eq!(s.last_published, None, "nothing was skipped to get past it");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_of_another_stellar_network_is_not_used() {
    let url = server(recorded()).await;
    let network = network_name("it-stellar-passphrase");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Stellar, vec![endpoint(&url, 100)]);
    rt.network_passphrase = Some("Public Global Stellar Network ; September 2015".into());
    rt.start = Some(36233);
    let mut running = start(rt, dir.path()).await;
    let s = running.wait_not_progressing("WrongChain", Duration::from_secs(30)).await;
    assert!(
        s.endpoints.message.contains(&format!("serves network passphrase {TESTNET_PASSPHRASE}")),
        "names what the endpoint serves: {s:?}"
    );
    assert_eq!(s.last_published, None, "no testnet ledger is published for a mainnet Network");
    running.stop().await;
}

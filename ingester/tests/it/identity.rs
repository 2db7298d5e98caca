//! Chain identity: an endpoint that answers another chain id is never asked for a block, shows in
//! `EndpointsVerified` and the metrics, and comes back into rotation once it serves the Network's
//! chain again; with no endpoint of the right chain nothing is published and `Progressing` says why.

use std::time::Duration;

use chainwatch_crds::ChainType;
use chainwatch_devkit::devnet::Anvil;
use chainwatch_devkit::faulty_rpc::{Fault, FaultyRpc};

use crate::common::*;

const ANVIL_CHAIN_ID: u64 = 31337;

fn gauge(metrics: &str, name: &str, endpoint: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("endpoint=\"{endpoint}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_of_another_chain_serves_no_block_and_returns_when_fixed() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let liar = FaultyRpc::start(&anvil.url).await;
    liar.set(Fault::ChainId(1));
    let liar_label = liar.addr.to_string();
    anvil.mine(60).await.unwrap();
    let head = anvil.block_number().await.unwrap();

    let network = network_name("it-identity");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&liar.url(), 50), endpoint(&anvil.url, 50)]);
    rt.chain_id = Some(ANVIL_CHAIN_ID);
    rt.start = Some(1);
    // asked again every second, so the fixed endpoint is back soon
    let mut running =
        start_with(rt, dir.path(), Options { recheck: Some(Duration::from_secs(1)), ..Options::default() })
            .await;
    running.wait_published(head, Duration::from_secs(120)).await;

    let records = read_topic(&network, Duration::from_secs(30), |r| r.len() as u64 >= head).await;
    let numbers: Vec<u64> = blocks(&records).iter().map(|b| b.number()).collect();
    assert_eq!(numbers, (1..=head).collect::<Vec<_>>(), "every block, from the endpoint of the right chain");
    assert!(liar.requests() > 0, "the endpoint of another chain was asked which chain it serves");
    assert_eq!(liar.calls_except(&["eth_chainId"]), 0, "nothing but its chain id was asked of it");

    let s = running.status.borrow().clone();
    assert_eq!(s.endpoints.ok, Some(false), "{s:?}");
    assert_eq!(s.endpoints.reason, "WrongChain");
    assert!(
        s.endpoints.message.contains(&format!("{liar_label} serves chain id 1"))
            && s.endpoints.message.contains(&ANVIL_CHAIN_ID.to_string()),
        "the condition names the endpoint, what it serves and what the Network says: {}",
        s.endpoints.message
    );
    assert_eq!(s.progressing.ok, Some(true), "the other endpoint keeps the network going: {s:?}");
    let m = running.metrics_text();
    assert_eq!(gauge(&m, "chainwatch_rpc_endpoint_serves_network", &liar_label), Some(0.0), "{m}");
    assert_eq!(
        gauge(&m, "chainwatch_rpc_endpoint_serves_network", &anvil.url.replace("http://", "")),
        Some(1.0)
    );

    // fixed: back in rotation, and it takes its share of the blocks
    liar.set(Fault::None);
    running
        .wait_for(Duration::from_secs(30), "both endpoints verified", |s| {
            s.endpoints.ok == Some(true) && s.endpoints.message.starts_with("2 of 2 endpoints verified")
        })
        .await;
    anvil.mine(40).await.unwrap();
    let head = anvil.block_number().await.unwrap();
    running.wait_published(head, Duration::from_secs(120)).await;
    assert!(liar.calls_except(&["eth_chainId"]) > 0, "the fixed endpoint serves blocks again");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_endpoint_of_the_chain_nothing_is_published_and_progressing_says_why() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let liar = FaultyRpc::start(&anvil.url).await;
    liar.set(Fault::ChainId(1));
    anvil.mine(5).await.unwrap();

    let network = network_name("it-identity-none");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&liar.url(), 100)]);
    rt.chain_id = Some(ANVIL_CHAIN_ID);
    let mut running = start(rt, dir.path()).await;
    let s = running.wait_not_progressing("WrongChain", Duration::from_secs(30)).await;
    assert!(s.progressing.message.contains("chain id 1"), "{s:?}");
    assert_eq!(s.rpc.reason, "WrongChain", "{s:?}");
    assert_eq!(s.last_published, None, "nothing of another chain is published");
    assert_eq!(liar.calls_except(&["eth_chainId"]), 0);
    running.stop().await;
}

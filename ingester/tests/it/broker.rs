//! The broker killed (SIGKILL) and back: the ingester's producer recovers by itself and no block is
//! lost. A private broker (its own port and data), so the test bed's stays up.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chainwatch_crds::ChainType;
use chainwatch_devkit::broker::Broker;
use chainwatch_devkit::devnet::Anvil;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_back_after_5_s_loses_no_block() {
    let mut broker = Broker::spawn().await.unwrap();
    let anvil = Anvil::spawn(&anvil_bin(), &["--block-time", "1"]).await.unwrap();
    let network = network_name("it-broker");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&anvil.url, 100)]);
    rt.start = Some(1);
    let options = Options { bootstrap: Some(broker.bootstrap()), ..Options::default() };
    let mut running = start_with(rt, dir.path(), options).await;
    running.wait_published(3, Duration::from_secs(60)).await;

    broker.kill().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.start().await.unwrap();
    let back = Instant::now();
    let head = anvil.block_number().await.unwrap();
    running.wait_published(head, Duration::from_secs(120)).await;
    eprintln!(
        "broker back: blocks up to the head ({head}) published {} ms later",
        back.elapsed().as_millis()
    );
    running.stop().await;

    let records = read_topic_of(&broker.bootstrap(), &network, Duration::from_secs(30), |r| {
        blocks(r).iter().any(|b| b.number() >= head)
    })
    .await;
    let numbers: Vec<u64> = blocks(&records).iter().map(|b| b.number()).collect();
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    let missing: Vec<u64> = (1..=head).filter(|n| !distinct.contains(n)).collect();
    assert!(missing.is_empty(), "blocks lost across the broker restart: {missing:?} (topic: {numbers:?})");
    eprintln!("published again after the restart: {} block(s)", numbers.len() - distinct.len());
}

//! Endpoints that fail or lie, through a JSON-RPC proxy in front of anvil: an endpoint down for
//! 12 s (the status stays honest, ingestion resumes soon after it returns), and a block whose
//! parent is not the tip while nothing was replaced (bounded retries, a condition saying what was
//! answered, another endpoint tried).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chainwatch_crds::ChainType;
use chainwatch_devkit::devnet::Anvil;
use chainwatch_devkit::faulty_rpc::{Fault, FaultyRpc};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_for_12_s_shows_and_ingestion_resumes_soon_after() {
    let anvil = Anvil::spawn(&anvil_bin(), &["--block-time", "1"]).await.unwrap();
    let rpc = FaultyRpc::start(&anvil.url).await;
    let network = network_name("it-outage");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&rpc.url(), 100)]);
    rt.start = Some(1);
    rt.poll_interval = Duration::from_millis(500);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(3, Duration::from_secs(60)).await;

    rpc.set(Fault::Down);
    let down = Instant::now();
    // the head is not known any more: Progressing says so, with the last head and its age
    let s = running.wait_not_progressing("HeadUnknown", Duration::from_secs(30)).await;
    assert!(s.progressing.message.contains("the head was block"), "{s:?}");
    assert_eq!(s.rpc.ok, Some(false), "{s:?}");
    let left = Duration::from_secs(12).saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;

    rpc.set(Fault::None);
    let back = Instant::now();
    let head = anvil.block_number().await.unwrap();
    running.wait_published(head, Duration::from_secs(60)).await;
    eprintln!(
        "endpoint back: head {head} published {} ms later (poll interval 500 ms)",
        back.elapsed().as_millis()
    );
    running
        .wait_for(Duration::from_secs(10), "Progressing True again", |s| s.progressing.ok == Some(true))
        .await;
    running.stop().await;
    let records =
        read_topic(&network, Duration::from_secs(30), |r| blocks(r).iter().any(|b| b.number() >= head)).await;
    let got: BTreeSet<u64> = blocks(&records).iter().map(|b| b.number()).collect();
    assert!((1..=head).all(|n| got.contains(&n)), "no block skipped: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_of_another_fork_is_asked_again_with_backoff_and_said() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    anvil.mine(10).await.unwrap();
    let liar = FaultyRpc::start(&anvil.url).await;
    liar.set(Fault::WrongParent(6));
    let network = network_name("it-wrong-parent");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&liar.url(), 100)]);
    rt.start = Some(1);
    rt.poll_interval = Duration::from_millis(500);
    let mut running = start(rt, dir.path()).await;
    let s = running.wait_not_progressing("InconsistentAnswers", Duration::from_secs(30)).await;
    assert!(
        s.progressing.message.contains("block 6 names a parent (0xabab")
            && s.progressing.message.contains("still canonical"),
        "says what the endpoint answered: {}",
        s.progressing.message
    );
    assert_eq!(s.last_published, Some(5), "nothing after the tip is published: {s:?}");
    // no hot loop: retries back off (up to twice the poll interval, 1 s); before, ~286 requests
    // for that block in 10 s
    let hits = liar.fault_hits();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let in_10_s = liar.fault_hits() - hits;
    eprintln!("requests for the inconsistent block in 10 s: {in_10_s}");
    assert!(in_10_s <= 40, "{in_10_s} requests for block 6 in 10 s");

    // the endpoint answers right again: the block goes through
    liar.set(Fault::None);
    running.wait_published(10, Duration::from_secs(30)).await;
    running
        .wait_for(Duration::from_secs(10), "Progressing True again", |s| s.progressing.ok == Some(true))
        .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_endpoint_answers_when_one_serves_a_block_of_another_fork() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    anvil.mine(30).await.unwrap();
    let liar = FaultyRpc::start(&anvil.url).await;
    liar.set(Fault::WrongParent(6));
    let network = network_name("it-wrong-parent-two");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&liar.url(), 50), endpoint(&anvil.url, 50)]);
    rt.start = Some(1);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(30, Duration::from_secs(60)).await;
    running.stop().await;
    let records =
        read_topic(&network, Duration::from_secs(30), |r| blocks(r).iter().any(|b| b.number() >= 30)).await;
    let b6 = blocks(&records).into_iter().filter(|b| b.number() == 6).collect::<Vec<_>>();
    let b5 = blocks(&records).into_iter().find(|b| b.number() == 5).unwrap();
    assert!(
        !b6.is_empty() && b6.iter().all(|b| b.id().parent_hash == b5.id().hash),
        "block 6 as the chain has it, never the lie"
    );
}

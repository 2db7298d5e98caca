//! EVM ingestion against anvil and the broker: gap-free ordered blocks with receipts, resume from the
//! checkpoint, reorg records.

use std::time::Duration;

use alloy_primitives::U256;
use chainwatch_core::block::Block;
use chainwatch_crds::ChainType;
use chainwatch_crds::network::Finality;
use chainwatch_devkit::devnet::Anvil;
use chainwatch_platform::codec::BlockTopicRecord;

use crate::common::*;

fn numbers(records: &[BlockTopicRecord]) -> Vec<u64> {
    blocks(records).iter().map(|b| b.number()).collect()
}

/// Every block from `first` to `last` exactly once, in order, each the child of the one before.
fn assert_gap_free(records: &[BlockTopicRecord], first: u64, last: u64) {
    let bs = blocks(records);
    let got: Vec<u64> = bs.iter().map(|b| b.number()).collect();
    let want: Vec<u64> = (first..=last).collect();
    assert_eq!(got.len(), want.len(), "block count (first {:?}, last {:?})", got.first(), got.last());
    assert_eq!(got, want);
    for pair in bs.windows(2) {
        assert_eq!(
            pair[1].id().parent_hash,
            pair[0].id().hash,
            "block {} does not follow block {}",
            pair[1].number(),
            pair[0].number()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_blocks_with_transfers_arrive_gap_free_and_in_order() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    let accounts = anvil.accounts().await.unwrap();
    let token = anvil.deploy_token(accounts[0], U256::from(10u64).pow(U256::from(18))).await.unwrap();
    anvil.transfer_blocks(token, accounts[0], accounts[1], 300, 3).await.unwrap();
    anvil.mine(700).await.unwrap();
    let head = anvil.block_number().await.unwrap();
    assert!(head >= 1000, "head {head}");

    let network = network_name("it-evm-1000");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&anvil.url, 100)]);
    rt.start = Some(1);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(head, Duration::from_secs(120)).await;
    running.stop().await;

    let records = read_topic(&network, Duration::from_secs(60), |r| r.len() as u64 >= head).await;
    assert_gap_free(&records, 1, head);
    let transfers: usize = blocks(&records)
        .iter()
        .map(|b| match b {
            Block::Evm(e) => e
                .transactions
                .iter()
                .map(|t| t.receipt.as_ref().expect("every transaction has its receipt").logs.len())
                .sum::<usize>(),
            _ => 0,
        })
        .sum();
    // 900 transfers plus the mint the token's constructor emits when it is deployed
    assert_eq!(transfers, 300 * 3 + 1, "every Transfer log is in the published receipts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_resumes_after_the_checkpoint() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    anvil.mine(50).await.unwrap();
    let network = network_name("it-evm-resume");
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at_1(&network, &anvil.url);
    let mut first = start(rt.clone(), dir.path()).await;
    first.wait_published(50, Duration::from_secs(60)).await;
    first.stop().await;
    // downtime: 150 more blocks
    anvil.mine(150).await.unwrap();
    let mut second = start(rt, dir.path()).await;
    second.wait_published(200, Duration::from_secs(60)).await;
    second.stop().await;
    let records = read_topic(&network, Duration::from_secs(60), |r| r.len() >= 200).await;
    assert_gap_free(&records, 1, 200);

    // restarted at the head, with nothing new to publish: the status still says where it stands
    let mut third = start(runtime_at_1(&network, &anvil.url), dir.path()).await;
    third.wait_published(200, Duration::from_secs(10)).await;
    third.stop().await;
}

fn runtime_at_1(network: &str, url: &str) -> Runtime {
    let mut rt = runtime(network, ChainType::Evm, vec![endpoint(url, 100)]);
    rt.start = Some(1);
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_of_depth_three_is_recorded_with_the_replaced_blocks() {
    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    anvil.mine(10).await.unwrap();
    let network = network_name("it-evm-reorg");
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(&network, ChainType::Evm, vec![endpoint(&anvil.url, 100)]);
    rt.start = Some(1);
    let mut running = start(rt, dir.path()).await;
    running.wait_published(10, Duration::from_secs(60)).await;
    let before = read_topic(&network, Duration::from_secs(30), |r| r.len() >= 10).await;
    let old: Vec<_> = blocks(&before).iter().map(|b| b.id()).collect();

    anvil.reorg(3).await.unwrap();
    anvil.mine(2).await.unwrap();
    running.wait_published(12, Duration::from_secs(60)).await;
    let status = running.status.borrow().clone();
    running.stop().await;

    let records = read_topic(&network, Duration::from_secs(30), |r| {
        r.iter().any(|x| matches!(x, BlockTopicRecord::Reorg(_))) && numbers(r).last() == Some(&12)
    })
    .await;
    let reorg = records
        .iter()
        .find_map(|r| match r {
            BlockTopicRecord::Reorg(x) => Some(x.clone()),
            _ => None,
        })
        .expect("a reorg record");
    assert_eq!(reorg.replaced, old[7..10].to_vec(), "the replaced blocks are 8, 9 and 10 as first published");
    let replacement: Vec<u64> = reorg.replacement.iter().map(|b| b.number).collect();
    assert_eq!(replacement, [8, 9, 10]);
    for (old, new) in reorg.replaced.iter().zip(&reorg.replacement) {
        assert_ne!(old.hash, new.hash);
    }
    // after the record: the canonical 8, 9, 10, then 11 and 12, each the child of the one before
    let after: Vec<_> =
        records.iter().skip_while(|r| !matches!(r, BlockTopicRecord::Reorg(_))).skip(1).cloned().collect();
    assert_gap_free(&after, 8, 12);
    assert_eq!(blocks(&after)[0].id().hash, reorg.replacement[0].hash);
    assert_eq!(status.last_reorg.map(|(from, depth, _)| (from, depth)), Some((8, 3)));
}

/// `finality: safe` and `finalized` follow the chain's own tags — on anvil 32 and 64 blocks behind
/// the head (one and two epochs of 32 slots, as on Ethereum) — and never publish past them;
/// `confirmations` are not subtracted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_and_finalized_heads_follow_the_chains_tags() {
    for (finality, lag) in [(Finality::Safe, 32), (Finality::Finalized, 64)] {
        let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
        anvil.mine(100).await.unwrap();
        let network = network_name("it-evm-final");
        let dir = tempfile::tempdir().unwrap();
        let mut rt = runtime_at_1(&network, &anvil.url);
        rt.finality = finality;
        rt.confirmations = 5;
        let mut running = start(rt, dir.path()).await;
        let at = |head: u64| {
            move |s: &chainwatch_ingester::status::IngestStatus| {
                s.head == Some(head) && s.target == Some(head - lag) && s.last_published == Some(head - lag)
            }
        };
        running.wait_for(Duration::from_secs(60), &format!("{finality:?} at 100 - {lag}"), at(100)).await;
        anvil.mine(20).await.unwrap();
        running.wait_for(Duration::from_secs(60), &format!("{finality:?} at 120 - {lag}"), at(120)).await;
        // a few more polls at that head: nothing beyond the tag
        tokio::time::sleep(Duration::from_millis(500)).await;
        running.stop().await;
        // everything the topic holds (read until it stays quiet), so a block past the tag shows
        let records = read_topic(&network, Duration::from_secs(5), |_| false).await;
        assert_gap_free(&records, 1, 120 - lag);
    }
}

/// `publishSeen`: each block above the confirmation depth is published as `seen` when it is at the
/// head and once more as `final` when the depth reaches it; a block already deep when first read
/// is published once. Judged against anvil's chain: every canonical block up to the depth is
/// published in a final form exactly once (also across a restart), each `final` after its `seen`
/// with the same hash, and the blocks a reorg replaced before they were final never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_seen_publishes_at_the_head_then_final_and_never_a_replaced_block_as_final() {
    use chainwatch_core::phase::BlockPhase;
    use std::collections::{BTreeMap, BTreeSet};

    let anvil = Anvil::spawn(&anvil_bin(), &[]).await.unwrap();
    anvil.mine(10).await.unwrap();
    let network = network_name("it-evm-seen");
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut rt = runtime_at_1(&network, &anvil.url);
        rt.confirmations = 3;
        rt.publish_seen = true;
        rt
    };
    let mut running = start(settings(), dir.path()).await;
    running.wait_published(10, Duration::from_secs(60)).await;
    // one block at a time: each is at the head when it is read
    for n in 11..=13 {
        anvil.mine(1).await.unwrap();
        running.wait_published(n, Duration::from_secs(60)).await;
    }
    let hash_of = |n: u64| {
        let anvil = &anvil;
        async move {
            let b = anvil
                .rpc("eth_getBlockByNumber", serde_json::json!([format!("{n:#x}"), false]))
                .await
                .unwrap();
            b["hash"].as_str().unwrap().to_string()
        }
    };
    let mut replaced = BTreeSet::new();
    for n in [12, 13] {
        replaced.insert(hash_of(n).await);
    }
    // 12 and 13 are above the depth (head 13, depth 3: final up to 10)
    anvil.reorg(2).await.unwrap();
    anvil.mine(1).await.unwrap();
    // the canonical 12, 13 and 14 republished (as seen: the depth is at 11)
    running
        .wait_for(Duration::from_secs(60), "the reorg handled", |s| {
            s.last_reorg.is_some() && s.progressing.message.starts_with("waiting for block 15")
        })
        .await;
    running.stop().await;
    // a restart in the middle: the checkpoint says which blocks were published as final
    let mut running = start(settings(), dir.path()).await;
    for n in 15..=18 {
        anvil.mine(1).await.unwrap();
        running.wait_published(n, Duration::from_secs(60)).await;
    }
    running.wait_for(Duration::from_secs(60), "head 18", |s| s.head == Some(18)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    let records = read_topic(&network, Duration::from_secs(5), |_| false).await;
    // (number, hash) → phases in the order published
    let mut published: BTreeMap<(u64, String), Vec<BlockPhase>> = BTreeMap::new();
    for r in &records {
        if let BlockTopicRecord::Block(b) = r {
            let id = b.block.id();
            published.entry((id.number, id.hash)).or_default().push(b.phase);
        }
    }
    let head = 18;
    let depth = head - 3;
    for n in 1..=head {
        let hash = hash_of(n).await;
        let phases = published.get(&(n, hash.clone())).cloned().unwrap_or_default();
        let finals = phases.iter().filter(|p| **p != BlockPhase::Seen).count();
        if n <= depth {
            assert_eq!(finals, 1, "block {n} ({hash}) published in a final form once: {phases:?}");
        } else {
            assert_eq!(phases, [BlockPhase::Seen], "block {n} above the depth: seen only");
        }
        if n > 10 {
            // read at the head: seen first, then final once the depth reached it
            let want: &[BlockPhase] =
                if n <= depth { &[BlockPhase::Seen, BlockPhase::Final] } else { &[BlockPhase::Seen] };
            assert_eq!(phases, want, "block {n}");
        } else if n <= 7 {
            assert_eq!(phases, [BlockPhase::Once], "block {n} was deep when first read");
        } else {
            assert_eq!(phases, [BlockPhase::Seen, BlockPhase::Final], "block {n}");
        }
    }
    for ((n, hash), phases) in &published {
        if replaced.contains(hash) {
            assert_eq!(phases, &[BlockPhase::Seen], "replaced block {n} ({hash}) was never final");
        }
    }
    eprintln!(
        "published {} block records for {} distinct blocks up to {head}; replaced before final: {}",
        records.len(),
        published.len(),
        replaced.len()
    );
}

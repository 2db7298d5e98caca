//! Crashes lose nothing: the worker killed with SIGKILL in the middle of 500 matching transfers,
//! then restarted — every notification arrives, none twice; the ingester killed the same way in
//! the middle of 1,000 blocks — the topic still holds every block, in order (duplicates reported).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use alloy_primitives::U256;
use chainwatch_crds::{Network, Trigger};
use chainwatch_platform::bus::blocks_topic;
use chainwatch_platform::codec::BlockTopicRecord;
use kube::api::Api;

use crate::bed::{Bed, T};
use crate::harness::{eventually, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_killed_mid_stream_loses_and_doubles_nothing() {
    let bed = Bed::start(&[]).await;
    bed.webhook("hook", "/hook").await;
    // every transfer, not the mint of the deployment
    bed.monitor("every", "from != 0x0000000000000000000000000000000000000000", &["hook"]).await;
    bed.admitted("every").await;
    let mut ingester = bed.ingester();
    // it writes no status before it is killed: the Trigger's count after the restart comes from
    // what is durable, not from what the killed worker had counted
    let mut worker = bed.worker_with(Some("w0"), &["--status-interval=1h".into()]);
    ingester.ready().await;
    worker.ready().await;

    // 500 matching transfers in 50 blocks
    bed.anvil.transfer_blocks(bed.token, bed.accounts[0], bed.accounts[1], 50, 10).await.unwrap();
    let http = &bed.http;
    eventually("150 notifications before the kill", T, || async {
        (http.received().len() >= 150).then_some(())
    })
    .await;
    worker.kill9().await;
    let killed_at_ms = chainwatch_platform::codec::now_ms();
    let at_kill = bed.http.received().len();
    let mut worker = bed.worker("w0");
    worker.ready().await;
    let distinct = || {
        bed.http
            .received()
            .iter()
            .map(|r| r.json()["body"].as_str().unwrap_or_default().to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    eventually("500 distinct notifications", Duration::from_secs(120), || async {
        (distinct() >= 500).then_some(())
    })
    .await;
    // stragglers (redeliveries) would come right after the restart's catch-up
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = bed.http.received();
    let keys: HashSet<&str> = got.iter().filter_map(|r| r.header("Idempotency-Key")).collect();
    let duplicates = got.len() - distinct();
    // how long before the kill the first copy of each repeated notification arrived: the window
    // between a delivery and its acknowledged record
    let mut first: HashMap<String, u64> = HashMap::new();
    let mut repeated = HashSet::new();
    for r in &got {
        let body = r.json()["body"].as_str().unwrap_or_default().to_string();
        match first.entry(body) {
            std::collections::hash_map::Entry::Occupied(e) => {
                repeated.insert(e.key().clone());
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r.at_ms);
            }
        }
    }
    let mut before_kill: Vec<u64> = repeated.iter().map(|b| killed_at_ms.saturating_sub(first[b])).collect();
    before_kill.sort_unstable();
    eprintln!(
        "first copies of the repeated notifications arrived this long before the kill (ms): {before_kill:?}"
    );
    eprintln!(
        "worker SIGKILLed after {at_kill} of 500 notifications; after restart: {} received, {} distinct, {duplicates} duplicates at the receiver, {} distinct Idempotency-Keys",
        got.len(),
        distinct(),
        keys.len()
    );
    assert_eq!(distinct(), 500, "0 missing");
    // A notification delivered in the last milliseconds before the kill, whose delivered-record
    // was not yet acknowledged by the broker, is sent again after the restart (at-least-once):
    // with the same Idempotency-Key, so a receiver that honours it sees each one once.
    assert_eq!(keys.len(), 500, "a repeated notification carries its first Idempotency-Key");
    assert!(duplicates <= 32, "repeats are bounded by the notifications in flight (32), got {duplicates}");
    // the Trigger counts what the receiver got: every distinct notification, at most the repeats
    // more (a repeat delivered by the restarted worker counts once more on its delta)
    let triggers: Api<Trigger> = Api::namespaced(bed.client.clone(), &bed.ns);
    let counted = eventually("500 deliveries counted on the Trigger", T, || async {
        let n = triggers.get("hook").await.ok()?.status?.delivered_count?;
        (n >= 500).then_some(n)
    })
    .await;
    eprintln!("deliveredCount {counted}; the receiver got {} ({} distinct)", got.len(), distinct());
    assert!(counted as usize <= got.len(), "deliveredCount {counted} above the {} received", got.len());
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingester_killed_mid_stream_skips_no_block() {
    let bed = Bed::start(&[]).await;
    // 1,000 blocks with a transfer each, before the ingester starts (a backfill from block 1)
    bed.anvil.set_automine(false).await.unwrap();
    for _ in 0..1000 {
        bed.anvil.transfer(bed.token, bed.accounts[0], bed.accounts[1], U256::from(1u64)).await.unwrap();
        bed.anvil.mine(1).await.unwrap();
    }
    let head = bed.anvil.block_number().await.unwrap();
    let networks: Api<Network> = Api::all(bed.client.clone());
    let mut ingester = bed.ingester();
    ingester.ready().await;
    let net = bed.network.clone();
    // kill it mid-backfill, watching its own metric closely
    let sample = format!("chainwatch_ingester_last_published_block{{network=\"{net}\"}}");
    eventually("400 blocks published", T, || async {
        ingester.metric(&sample).await.filter(|b| *b >= 400.0).map(|_| ())
    })
    .await;
    ingester.kill9().await;
    let at_kill = get(&networks, &net).await.status.and_then(|s| s.last_block);
    let mut ingester = bed.ingester();
    ingester.ready().await;
    eventually("every block published", T, || async {
        get(&networks, &net).await.status.and_then(|s| s.last_block).filter(|b| *b >= head).map(|_| ())
    })
    .await;
    let mut numbers: Vec<u64> = Vec::new();
    chainwatch_devkit::testbed::read_topic(&blocks_topic(&bed.network), T, |raw| {
        if let BlockTopicRecord::Block(b) = BlockTopicRecord::decode(&raw).unwrap() {
            numbers.push(b.block.number());
        }
        // the replay after the crash ends at the head too
        numbers.last() == Some(&head) && numbers.len() as u64 >= head
    })
    .await;
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for n in &numbers {
        *counts.entry(*n).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=head).filter(|n| !counts.contains_key(n)).collect();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // in order: each record follows its predecessor, or restarts at or before it (the replay after the crash)
    let restarts = numbers.windows(2).filter(|w| w[1] != w[0] + 1).count();
    eprintln!(
        "ingester SIGKILLed at block ≥400 of {head} (Network status then said {at_kill:?}): {} records, {} missing, {duplicates} duplicates, {restarts} restart point(s)",
        numbers.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "blocks never published: {missing:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1 || w[1] <= w[0]), "records out of order");
    assert!(restarts <= 1, "one replay point at most");
    ingester.stop().await;
    bed.stop().await;
}

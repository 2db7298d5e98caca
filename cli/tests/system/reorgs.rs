//! Chain truth after reorgs, on a real chain: anvil replaces the newest 1, 3 and 10 blocks
//! (`anvil_reorg`) after their transfers were notified. Judged against the chain itself (its
//! blocks and logs after the reorgs, not what chainwatch reported): every notification of a block
//! no longer on the chain is retracted exactly once, no notification of a block still on it is,
//! and every transfer of the chain up to the head the Network follows was notified.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chainwatch_crds::{Monitor, Network};
use chainwatch_devkit::receivers::Received;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::bed::{Bed, EVERY_TRANSFER, T};
use crate::harness::eventually;

/// keccak256("Transfer(address,address,uint256)")
const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// A notification as the receiver got it: (block number, block hash, transaction hash).
fn told(r: &Received) -> (u64, String, String) {
    let body = r.json()["body"].as_str().unwrap_or_default().to_string();
    let mut words = body.split(' ');
    let number = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let hash = words.next().unwrap_or_default().to_string();
    let tx = words.next().unwrap_or_default().to_string();
    (number, hash, tx)
}

/// What the notifications were about: (block hash, transaction hash).
fn notified(originals: &[Received]) -> BTreeSet<(String, String)> {
    originals.iter().map(told).map(|(_, hash, tx)| (hash, tx)).collect()
}

fn is_retraction(r: &Received) -> bool {
    r.header("Chainwatch-Status") == Some("retracted")
}

/// The chain's truth: every transfer (not the mint) in blocks 1..=`to`, as (block hash, tx hash).
async fn transfers_on_chain(bed: &Bed, to: u64) -> BTreeSet<(String, String)> {
    let logs = bed
        .anvil
        .rpc(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": format!("{to:#x}"), "address": format!("{:#x}", bed.token), "topics": [TRANSFER]}]),
        )
        .await
        .unwrap();
    let zero = format!("0x{:064x}", 0);
    logs.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["topics"][1].as_str() != Some(zero.as_str()))
        .map(|l| {
            (l["blockHash"].as_str().unwrap().to_string(), l["transactionHash"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn canonical_hash(bed: &Bed, number: u64) -> String {
    let b = bed.anvil.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await.unwrap();
    b["hash"].as_str().unwrap_or_default().to_string()
}

/// The head the Network follows: the chain's minus the confirmations.
async fn followed_head(bed: &Bed, confirmations: u64) -> u64 {
    bed.anvil.block_number().await.unwrap().saturating_sub(confirmations)
}

async fn reorgs_are_retracted(confirmations: u64) {
    let bed = Bed::start(&[]).await;
    let networks: Api<Network> = Api::all(bed.client.clone());
    networks
        .patch(
            &bed.network,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"confirmations": confirmations}})),
        )
        .await
        .unwrap();
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": bed.ns},
        "spec": {"webhook": {"url": bed.http.url("/hook")}, "message": {"title": "${monitor.name}", "body": "${block.number} ${block.hash} ${transaction.hash}"},
                 "retryPolicy": {"initialBackoff": "50ms", "maxBackoff": "200ms"}}}))
    .await;
    let (ingester, worker) = bed.pipeline("every", EVERY_TRANSFER).await;

    let http = &bed.http;
    let originals = || http.received().into_iter().filter(|r| !is_retraction(r)).collect::<Vec<_>>();
    let retractions = || http.received().into_iter().filter(is_retraction).collect::<Vec<_>>();
    // (replaced blocks whose transfers had been notified, notifications retracted) per depth
    let mut rounds = Vec::new();
    for depth in [1u64, 3, 10] {
        // depth + 2 blocks of 2 transfers each, all notified before the reorg
        bed.anvil.transfer_blocks(bed.token, bed.accounts[0], bed.accounts[1], depth + 2, 2).await.unwrap();
        let head = followed_head(&bed, confirmations).await;
        let truth = transfers_on_chain(&bed, head).await;
        eventually(&format!("the transfers up to block {head} notified (depth {depth})"), T, || async {
            truth.is_subset(&notified(&originals())).then_some(())
        })
        .await;
        let before = retractions().len();
        let notified_before = originals().len();
        bed.anvil.reorg(depth).await.unwrap();
        // the chain moves on past the replaced blocks, so the Network's head reaches them again
        bed.anvil.mine(confirmations + 2).await.unwrap();
        // what the chain says was replaced among the notified
        let mut replaced = BTreeSet::new();
        for r in originals() {
            let (number, hash, tx) = told(&r);
            if canonical_hash(&bed, number).await != hash {
                replaced.insert((hash, tx));
            }
        }
        let expected = replaced.len();
        eventually(&format!("{expected} notifications retracted in all (depth {depth})"), T, || async {
            (retractions().len() >= expected).then_some(())
        })
        .await;
        rounds.push((depth, notified_before, retractions().len() - before));
    }
    // the chain after the last reorg, followed to its head: every transfer on it notified
    let head = followed_head(&bed, confirmations).await;
    let truth = transfers_on_chain(&bed, head).await;
    eventually("every transfer on the canonical chain notified", T, || async {
        truth.is_subset(&notified(&originals())).then_some(())
    })
    .await;
    // late copies would come now
    tokio::time::sleep(Duration::from_secs(3)).await;

    let originals = originals();
    let retractions = retractions();
    let mut by_key: HashMap<String, (u64, String, String)> = HashMap::new();
    for r in &originals {
        by_key.insert(r.header("Idempotency-Key").unwrap().to_string(), told(r));
    }
    let mut retracted: BTreeMap<String, usize> = BTreeMap::new();
    for r in &retractions {
        *retracted.entry(r.header("Idempotency-Key").unwrap().to_string()).or_default() += 1;
    }
    let mut replaced_keys = BTreeSet::new();
    for (key, (number, hash, _)) in &by_key {
        if canonical_hash(&bed, *number).await != *hash {
            replaced_keys.insert(key.clone());
        }
    }
    let twice: Vec<_> = retracted.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = replaced_keys.iter().filter(|k| !retracted.contains_key(*k)).collect();
    let wrong: Vec<_> = retracted.keys().filter(|k| !replaced_keys.contains(*k)).collect();
    let unknown: Vec<_> = retracted.keys().filter(|k| !by_key.contains_key(*k)).collect();
    let on_chain_notified = truth.len();
    eprintln!(
        "confirmations {confirmations}: rounds (depth, notified before, retractions) {rounds:?}; {} notifications ({} distinct), {} of blocks replaced, {} retractions ({} distinct); {on_chain_notified} transfers on the canonical chain, all notified",
        originals.len(),
        by_key.len(),
        replaced_keys.len(),
        retractions.len(),
        retracted.len()
    );
    assert!(twice.is_empty(), "retracted more than once: {twice:?}");
    assert!(missing.is_empty(), "notifications of replaced blocks never retracted: {missing:?}");
    assert!(wrong.is_empty(), "retractions of notifications whose block is still on the chain: {wrong:?}");
    assert!(unknown.is_empty(), "retractions of nothing that was sent: {unknown:?}");
    if confirmations == 0 {
        // each reorg replaced blocks whose transfers had been notified
        assert!(rounds.iter().all(|(_, _, n)| *n > 0), "{rounds:?}");
    }
    // every retraction for a replaced block's transfer: the Monitor counts them
    let monitors: Api<Monitor> = Api::namespaced(bed.client.clone(), &bed.ns);
    let counted = eventually("the Monitor's retractedCount", T, || async {
        let n = monitors.get("every").await.ok()?.status?.retracted_count.unwrap_or(0);
        (n as usize >= replaced_keys.len()).then_some(n)
    })
    .await;
    assert_eq!(counted as usize, replaced_keys.len(), "one per retracted match (one trigger each)");
    let sent = worker.metric("chainwatch_worker_retractions_total{outcome=\"sent\"}").await;
    assert_eq!(sent, Some(replaced_keys.len() as f64));
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_of_depth_1_3_and_10_at_0_confirmations_retract_every_notification_of_a_replaced_block_once() {
    reorgs_are_retracted(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_of_depth_1_3_and_10_at_2_confirmations_retract_every_notification_of_a_replaced_block_once() {
    reorgs_are_retracted(2).await;
}

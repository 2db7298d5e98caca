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

/// The retractions judged against the chain: the keys of the notifications whose block is no
/// longer on it, and how many retractions each key got.
struct Retracted {
    replaced_keys: BTreeSet<String>,
    retracted: BTreeMap<String, usize>,
}

impl Retracted {
    async fn judge(bed: &Bed, originals: &[&Received], retractions: &[&Received]) -> Self {
        let mut retracted: BTreeMap<String, usize> = BTreeMap::new();
        for r in retractions {
            *retracted.entry(r.header("Idempotency-Key").unwrap().to_string()).or_default() += 1;
        }
        let mut replaced_keys = BTreeSet::new();
        for r in originals {
            let (number, hash, _) = told(r);
            if canonical_hash(bed, number).await != hash {
                replaced_keys.insert(r.header("Idempotency-Key").unwrap().to_string());
            }
        }
        Retracted { replaced_keys, retracted }
    }

    /// Every notification of a replaced block retracted exactly once, none of a block on the chain.
    fn assert_exactly_once(&self) {
        let (replaced, retracted) = (&self.replaced_keys, &self.retracted);
        let twice: Vec<_> = retracted.iter().filter(|(_, n)| **n > 1).collect();
        let missing: Vec<_> = replaced.iter().filter(|k| !retracted.contains_key(*k)).collect();
        let wrong: Vec<_> = retracted.keys().filter(|k| !replaced.contains(*k)).collect();
        assert!(twice.is_empty(), "retracted more than once: {twice:?}");
        assert!(missing.is_empty(), "notifications of replaced blocks never retracted: {missing:?}");
        assert!(
            wrong.is_empty(),
            "retractions of notifications whose block is still on the chain: {wrong:?}"
        );
    }
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
    let judged = Retracted::judge(
        &bed,
        &originals.iter().collect::<Vec<_>>(),
        &retractions.iter().collect::<Vec<_>>(),
    )
    .await;
    let (replaced_keys, retracted) = (&judged.replaced_keys, &judged.retracted);
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
    judged.assert_exactly_once();
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

fn phase(r: &Received) -> Option<&str> {
    r.header("Chainwatch-Phase")
}

/// Two-phase alerts on a Network with `publishSeen` and 3 confirmations, a Monitor told at
/// `[seen, final]`, transfers mined one block at a time (each read at the head), and reorgs of
/// depth 1 and 3 (blocks only seen) and 10 (blocks final too). Judged against anvil's chain: every
/// transfer on the canonical chain was told at `seen` and then at `final` (same key family, `seen`
/// received first); `final` was never sent for a block replaced before it was final; every
/// notification of a replaced block, `seen` or `final`, was retracted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_then_final_with_reorgs_of_depth_1_3_and_10_final_never_for_a_replaced_block() {
    const CONFIRMATIONS: u64 = 3;
    let bed = Bed::start(&[]).await;
    let networks: Api<Network> = Api::all(bed.client.clone());
    networks
        .patch(
            &bed.network,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"confirmations": CONFIRMATIONS, "publishSeen": true}})),
        )
        .await
        .unwrap();
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": bed.ns},
        "spec": {"webhook": {"url": bed.http.url("/hook")}, "message": {"title": "${monitor.name} ${phase}", "body": "${block.number} ${block.hash} ${transaction.hash}"},
                 "retryPolicy": {"initialBackoff": "50ms", "maxBackoff": "200ms"}}}))
    .await;
    bed.monitor("every", EVERY_TRANSFER, &["hook"]).await;
    let monitors: Api<Monitor> = Api::namespaced(bed.client.clone(), &bed.ns);
    monitors
        .patch(
            "every",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"notifyAt": ["seen", "final"]}})),
        )
        .await
        .unwrap();
    bed.admitted("every").await;
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;

    let http = &bed.http;
    let at = |p: &'static str| {
        move || {
            http.received()
                .into_iter()
                .filter(|r| !is_retraction(r) && phase(r) == Some(p))
                .collect::<Vec<_>>()
        }
    };
    let (seen, finals) = (at("seen"), at("final"));
    let retractions = || http.received().into_iter().filter(is_retraction).collect::<Vec<_>>();
    // per round: (depth, the followed depth before the reorg, hashes of the replaced blocks)
    let mut rounds: Vec<(u64, u64, BTreeSet<String>)> = Vec::new();
    for depth in [1u64, 3, 10] {
        for _ in 0..depth + 2 {
            bed.anvil.transfer_blocks(bed.token, bed.accounts[0], bed.accounts[1], 1, 2).await.unwrap();
            let head = bed.anvil.block_number().await.unwrap();
            let truth = transfers_on_chain(&bed, head).await;
            eventually(&format!("block {head}'s transfers told at seen"), T, || async {
                truth.is_subset(&notified(&seen())).then_some(())
            })
            .await;
        }
        let head = bed.anvil.block_number().await.unwrap();
        let final_depth = head - CONFIRMATIONS;
        let truth = transfers_on_chain(&bed, final_depth).await;
        eventually(&format!("the transfers up to block {final_depth} told at final"), T, || async {
            truth.is_subset(&notified(&finals())).then_some(())
        })
        .await;
        let mut replaced = BTreeSet::new();
        for n in head + 1 - depth..=head {
            replaced.insert(canonical_hash(&bed, n).await);
        }
        bed.anvil.reorg(depth).await.unwrap();
        bed.anvil.mine(CONFIRMATIONS + 2).await.unwrap();
        let sent: Vec<Received> = seen().into_iter().chain(finals()).collect();
        let expected = sent.iter().filter(|r| replaced.contains(&told(r).1)).count();
        eventually(
            &format!("the {expected} notifications of the replaced blocks retracted (depth {depth})"),
            T,
            || async {
                let keys: BTreeSet<String> =
                    retractions().iter().map(|r| r.header("Idempotency-Key").unwrap().to_string()).collect();
                sent.iter()
                    .filter(|r| replaced.contains(&told(r).1))
                    .all(|r| keys.contains(r.header("Idempotency-Key").unwrap()))
                    .then_some(())
            },
        )
        .await;
        rounds.push((depth, final_depth, replaced));
    }
    let head = followed_head(&bed, CONFIRMATIONS).await;
    let truth = transfers_on_chain(&bed, head).await;
    eventually("every transfer on the canonical chain told at final", T, || async {
        truth.is_subset(&notified(&finals())).then_some(())
    })
    .await;
    // late copies would come now
    tokio::time::sleep(Duration::from_secs(3)).await;

    let all = http.received();
    let originals: Vec<(usize, &Received)> =
        all.iter().enumerate().filter(|(_, r)| !is_retraction(r)).collect();
    // every original is seen or final, keyed <key>:seen and <key>
    let mut seen_at: HashMap<String, usize> = HashMap::new();
    let mut final_at: HashMap<String, (usize, (u64, String, String))> = HashMap::new();
    for (i, r) in &originals {
        let key = r.header("Idempotency-Key").unwrap().to_string();
        match phase(r) {
            Some("seen") => {
                let family = key.strip_suffix(":seen").expect("a seen key ends in :seen").to_string();
                assert!(seen_at.insert(family, *i).is_none(), "seen sent twice: {key}");
            }
            Some("final") => {
                assert!(final_at.insert(key.clone(), (*i, told(r))).is_none(), "final sent twice: {key}");
            }
            other => panic!("a notification without a phase ({other:?}): {key}"),
        }
    }
    // final after seen, for every transfer (each was read at the head)
    let mut out_of_order = Vec::new();
    for (key, (i, _)) in &final_at {
        match seen_at.get(key) {
            Some(s) if s < i => {}
            other => out_of_order.push((key.clone(), other.copied(), *i)),
        }
    }
    // final never for a block replaced before it was final
    let mut final_of_replaced = Vec::new();
    for (_, (number, hash, _)) in final_at.values() {
        for (depth, final_depth, replaced) in &rounds {
            if replaced.contains(hash) && number > final_depth {
                final_of_replaced.push((*depth, *number, hash.clone()));
            }
        }
    }
    // every notification of a block no longer on the chain retracted once, none other
    let sent: Vec<&Received> = originals.iter().map(|(_, r)| *r).collect();
    let judged =
        Retracted::judge(&bed, &sent, &all.iter().filter(|r| is_retraction(r)).collect::<Vec<_>>()).await;
    let (replaced_keys, retracted) = (&judged.replaced_keys, &judged.retracted);
    let final_retracted = replaced_keys.iter().filter(|k| !k.ends_with(":seen")).count();
    eprintln!(
        "confirmations {CONFIRMATIONS}, publishSeen: {} seen and {} final notifications; {} of replaced blocks ({} final, all from the depth-10 reorg), {} retractions; {} transfers on the canonical chain, all told at seen then final",
        seen_at.len(),
        final_at.len(),
        replaced_keys.len(),
        final_retracted,
        retracted.values().sum::<usize>(),
        truth.len()
    );
    assert!(
        out_of_order.is_empty(),
        "final without an earlier seen (key, seen at, final at): {out_of_order:?}"
    );
    assert!(
        final_of_replaced.is_empty(),
        "final for blocks replaced before they were final: {final_of_replaced:?}"
    );
    judged.assert_exactly_once();
    // the depth-10 reorg replaced blocks that were final: their final notifications retracted too
    assert!(final_retracted > 0, "the depth-10 reorg retracted final notifications");
    assert!(rounds.iter().all(|(_, _, r)| !r.is_empty()));
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

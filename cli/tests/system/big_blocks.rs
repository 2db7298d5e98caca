//! A block far above the broker's message limit (50 MB of transactions, the limit is 16 MiB) is
//! published in parts, reassembled by the worker and matched like any other; the Network goes on
//! past it and stays Ready.

use std::time::{Duration, Instant};

use chainwatch_crds::Network;
use chainwatch_devkit::faulty_rpc::{Fault, FaultyRpc};
use chainwatch_platform::bus::blocks_topic;
use chainwatch_platform::codec::BlockTopicRecord;
use kube::api::Api;
use serde_json::json;

use crate::bed::{Bed, EVERY_TRANSFER, T};
use crate::harness::{condition, eventually, get};

/// 50 transactions of 500 kB random calldata: 50 MB of hex in the block the endpoint answers.
const EXTRA_TRANSACTIONS: usize = 50;
const CALLDATA_BYTES: usize = 500_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_above_the_message_limit_is_carried_in_parts_and_matched() {
    let bed = Bed::start(&[]).await;
    let rpc = FaultyRpc::start(&bed.anvil.url).await;
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": bed.network},
        "spec": {"type": "evm", "chainId": 31337, "rpc": [{"url": rpc.url(), "timeout": "60s"}], "confirmations": 0, "blockTime": "1s", "pollInterval": "100ms", "startBlock": 1, "kafka": {"partitions": 1, "deletionPolicy": "Delete"}}})).await;
    bed.webhook("hook", "/hook").await;
    let (ingester, worker) = bed.pipeline("every", EVERY_TRANSFER).await;

    let huge = bed.anvil.block_number().await.unwrap() + 1;
    rpc.set(Fault::Huge { block: huge, transactions: EXTRA_TRANSACTIONS, bytes: CALLDATA_BYTES });
    let started = Instant::now();
    let in_huge = bed.transfer(1, 5).await;
    let after = bed.transfer(2, 6).await;
    let anvil = &bed.anvil;
    let mined_in = |tx: String| async move {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([tx])).await.ok()?;
        u64::from_str_radix(receipt["blockNumber"].as_str()?.trim_start_matches("0x"), 16).ok()
    };
    let block_of_first = eventually("the first transfer mined", T, || mined_in(in_huge.clone())).await;
    assert_eq!(block_of_first, huge, "the first transfer is in the block the endpoint makes big");

    let http = &bed.http;
    let notified = |tx: &str| http.received().iter().any(|r| String::from_utf8_lossy(&r.body).contains(tx));
    eventually("the transfer in the big block notified", Duration::from_secs(180), || async {
        notified(&in_huge).then_some(())
    })
    .await;
    let end_to_end = started.elapsed();
    eventually("the transfer after it notified", T, || async { notified(&after).then_some(()) }).await;
    assert!(rpc.fault_hits() > 0, "the endpoint served the big block");

    // the topic: the block whole, with every transaction, once reassembled
    let mut big = None;
    chainwatch_devkit::testbed::read_topic(&blocks_topic(&bed.network), T, |raw| {
        if let BlockTopicRecord::Block(b) = BlockTopicRecord::decode(&raw).unwrap()
            && b.block.number() == huge
        {
            big = Some((raw.len(), b.block.transaction_count()));
        }
        big.is_some()
    })
    .await;
    let (bytes, transactions) = big.expect("the big block on its topic");
    assert!(bytes > 32 << 20, "more than two broker messages' worth: {bytes} bytes");
    assert_eq!(transactions, EXTRA_TRANSACTIONS + 1);

    let networks: Api<Network> = Api::all(bed.client.clone());
    eventually("the Network Ready past the big block", T, || async {
        let n = get(&networks, &bed.network).await;
        let ready = condition(&n, "Ready").is_some_and(|c| c.0 == "True");
        (ready && n.status.as_ref()?.last_block? > huge).then_some(())
    })
    .await;
    eprintln!(
        "big block: {} MB on the topic in parts, transfer in it notified {:.1} s after it was mined",
        bytes / 1_000_000,
        end_to_end.as_secs_f64()
    );
    ingester.stop().await;
    worker.stop().await;
    bed.stop().await;
}

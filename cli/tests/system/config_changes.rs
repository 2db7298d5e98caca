//! A changed Monitor applies to the next block without a restart: the time from applying a new
//! generation to the first block evaluated with it (the first match record carrying that
//! generation), over 20 changes while blocks flow.

use std::time::{Duration, Instant};

use chainwatch_devkit::testbed::{kafka_bootstrap, unique};
use chainwatch_platform::bus::MATCHES_TOPIC;
use chainwatch_platform::bus::kafka::KafkaArgs;
use chainwatch_platform::codec::MatchRecord;

use crate::bed::{Bed, T, percentiles};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_monitor_applies_to_the_next_block() {
    use chainwatch_platform::bus::Consumer;
    let bed = Bed::start(&["--block-time", "0.2"]).await;
    bed.webhook("hook", "/hook").await;
    let (ingester, worker) = bed.pipeline("moving", "value > 0").await;

    // a transfer in every block, from a background task
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = tokio::spawn({
        let (anvil_url, token, from, to) =
            (bed.anvil.url.clone(), bed.token, bed.accounts[0], bed.accounts[1]);
        let stop = stop.clone();
        async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let data = format!("0xa9059cbb{:0>64}{:064x}", hex(&to), 1_000_000 + i);
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": [{"from": format!("{from:#x}"), "to": format!("{token:#x}"), "data": data}]});
                let _ = http.post(&anvil_url).json(&body).send().await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let consumer = KafkaArgs::new(kafka_bootstrap()).consumer(&unique("probe"), &[MATCHES_TOPIC]).unwrap();
    // the probe joins its group and reads past older records first, so its start-up is not timed
    let warm = Instant::now() + T;
    loop {
        assert!(Instant::now() < warm, "no match of the first generation within {T:?}:\n{}", worker.tail());
        let Ok(Ok(m)) = tokio::time::timeout(T, consumer.recv()).await else { continue };
        if MatchRecord::decode(&m.payload).is_ok_and(|r| r.matched.network == bed.network) {
            break;
        }
    }
    let mut latencies = Vec::new();
    for change in 1..=20u64 {
        // every threshold still matches the stream: the record's generation tells which config evaluated it
        bed.monitor("moving", &format!("value > {change}"), &["hook"]).await;
        let applied = Instant::now();
        let generation = 1 + change as i64;
        let deadline = applied + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no block evaluated with generation {generation} within {T:?}:\n{}",
                worker.tail()
            );
            let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await else { continue };
            let Ok(r) = MatchRecord::decode(&m.payload) else { continue };
            if r.matched.network == bed.network
                && r.matched.monitor.generation.is_some_and(|g| g >= generation)
            {
                latencies.push(applied.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    stop.cancel();
    let _ = sender.await;
    eprintln!(
        "config change latencies in order (ms): {:?}",
        latencies.iter().map(|l| l.round() as u64).collect::<Vec<_>>()
    );
    let (p50, p99, max) = percentiles(latencies);
    eprintln!(
        "config change applied → first block evaluated with it, over 20 changes (200 ms blocks): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"
    );
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

fn hex(a: &alloy_primitives::Address) -> String {
    a.as_slice().iter().map(|b| format!("{b:02x}")).collect()
}

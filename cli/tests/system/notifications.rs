//! A transfer above the threshold → exactly one notification per trigger, rendered; one below →
//! none. Then the latency from block published to notification received, over 200 matches.

use std::collections::HashMap;
use std::time::Duration;

use chainwatch_crds::{Monitor, Trigger};
use chainwatch_platform::bus::MATCHES_TOPIC;
use chainwatch_platform::codec::MatchRecord;
use kube::Api;
use serde_json::json;

use crate::bed::{Bed, EVERY_TRANSFER, T, percentiles};
use crate::harness::eventually;

const THRESHOLD: u64 = 10_000_000_000; // 10,000 DUSD (6 decimals)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_threshold_each_trigger_notifies_once_and_below_none() {
    let bed = Bed::start(&[]).await;
    bed.webhook("hook", "/hook").await;
    bed.apply(harness_secret(&bed.ns, "slack", "url", &bed.http.url("/services/T/B/X"))).await;
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "slack", "namespace": bed.ns},
        "spec": {"slack": {"webhookUrlSecretRef": {"name": "slack", "key": "url"}}, "message": {"title": "${monitor.name} triggered", "body": "Large transfer of ${events.0.args.value} DUSD | tx ${transaction.hash}"}}})).await;
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "mail", "namespace": bed.ns},
        "spec": {"email": {"host": "127.0.0.1", "port": bed.smtp.addr.port(), "tls": "None", "sender": "alerts@acme.example", "recipients": ["oncall@acme.example"]},
                 "message": {"title": "Large transfer in block ${block.number}", "body": "${events.0.args.value} DUSD in ${transaction.hash}"}}})).await;
    bed.monitor("large", &format!("value > {THRESHOLD}"), &["hook", "slack", "mail"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;

    let big = bed.transfer(1, THRESHOLD + 2_000_000_000).await;
    let small = bed.transfer(2, THRESHOLD - 1).await;
    // a later match shows the pipeline got past both transfers' blocks
    let marker = bed.transfer(3, THRESHOLD * 5).await;
    // notifications of different matches are delivered concurrently, in no promised order: wait
    // for each expected one, not for a count that an earlier match (the mint) also makes
    let (http, smtp) = (&bed.http, &bed.smtp);
    for tx in [&big, &marker] {
        eventually(&format!("the webhook, Slack and email notifications of {tx}"), T, || async {
            let got = http.received();
            let on = |path: &str| {
                got.iter().any(|r| r.path == path && String::from_utf8_lossy(&r.body).contains(tx))
            };
            let mailed =
                smtp.mails().iter().any(|m| m.data.replace("=\r\n", "").replace("=\n", "").contains(tx));
            (on("/hook") && on("/services/T/B/X") && mailed).then_some(())
        })
        .await;
    }

    let got = bed.http.received();
    let on = |path: &str, tx: &str| {
        got.iter().filter(|r| r.path == path && String::from_utf8_lossy(&r.body).contains(tx)).count()
    };
    assert_eq!(
        (on("/hook", &big), on("/services/T/B/X", &big)),
        (1, 1),
        "one webhook and one Slack notification for the large transfer"
    );
    assert_eq!((on("/hook", &small), on("/services/T/B/X", &small)), (0, 0), "nothing below the threshold");
    let hook =
        got.iter().find(|r| r.path == "/hook" && String::from_utf8_lossy(&r.body).contains(&big)).unwrap();
    assert_eq!(
        hook.json(),
        json!({"title": "large test", "body": format!("{big} {}", THRESHOLD + 2_000_000_000)})
    );
    assert!(hook.header("Idempotency-Key").is_some_and(|k| k.len() == 64));
    let slack = got
        .iter()
        .find(|r| r.path == "/services/T/B/X" && String::from_utf8_lossy(&r.body).contains(&big))
        .unwrap();
    // upstream's Slack payload: mrkdwn text with the title in bold
    assert_eq!(
        slack.json()["blocks"][0]["text"]["text"],
        format!("*large test triggered*\n\nLarge transfer of {} DUSD | tx {big}", THRESHOLD + 2_000_000_000)
    );
    // quoted-printable soft line breaks undone
    let mails: Vec<String> =
        bed.smtp.mails().iter().map(|m| m.data.replace("=\r\n", "").replace("=\n", "")).collect();
    let for_big: Vec<_> = mails.iter().filter(|m| m.contains(&big)).collect();
    assert_eq!(for_big.len(), 1, "one email for the large transfer; got {mails:#?}");
    assert!(for_big[0].contains("Subject: Large transfer in block"), "{}", for_big[0]);
    assert!(!mails.iter().any(|m| m.contains(&small)));

    // the worker reports on the Monitor and on each Trigger: as many matches and deliveries as the
    // webhook received (the token's mint at deployment is above the threshold too), no failure
    let matches = bed.http.received().iter().filter(|r| r.path == "/hook").count() as u64;
    let monitors: Api<Monitor> = Api::namespaced(bed.client.clone(), &bed.ns);
    let status = eventually(&format!("{matches} matches counted on the Monitor"), T, || async {
        let s = monitors.get("large").await.ok()?.status?;
        (s.match_count == Some(matches)).then_some(s)
    })
    .await;
    assert!(status.last_match_time.is_some());
    let last = status.last_match.expect("the last match");
    assert_eq!((last.network.as_str(), last.transaction.as_str()), (bed.network.as_str(), marker.as_str()));
    let triggers: Api<Trigger> = Api::namespaced(bed.client.clone(), &bed.ns);
    for name in ["hook", "slack", "mail"] {
        let s = eventually(&format!("{matches} deliveries counted on Trigger {name}"), T, || async {
            let s = triggers.get(name).await.ok()?.status?;
            (s.delivered_count == Some(matches)).then_some(s)
        })
        .await;
        assert!(s.last_delivery_time.is_some(), "{name}");
        assert_eq!(s.failure_count.unwrap_or(0), 0, "{name}: {:?}", s.last_error);
    }
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

fn harness_secret(ns: &str, name: &str, key: &str, value: &str) -> serde_json::Value {
    crate::harness::secret(ns, name, key, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_from_block_published_to_notification_received() {
    let bed = Bed::start(&[]).await;
    bed.webhook("hook", "/hook").await;
    let (ingester, worker) = bed.pipeline("all", EVERY_TRANSFER).await;

    // 200 transfers, one block each, spaced like a fast chain
    let mut txs = Vec::new();
    for i in 0..200u64 {
        txs.push(bed.transfer(1 + (i % 3) as usize, 1_000 + i).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = &bed.http;
    eventually("200 notifications", T, || async { (http.received().len() >= 200).then_some(()) }).await;
    let mut published: HashMap<String, u64> = HashMap::new();
    chainwatch_devkit::testbed::read_topic(MATCHES_TOPIC, T, |raw| {
        if let Ok(r) = MatchRecord::decode(&raw)
            && r.matched.network == bed.network
        {
            published.insert(r.matched.transaction_hash(), r.block_published_at_ms);
        }
        published.len() >= 200
    })
    .await;
    let latencies: Vec<f64> = bed
        .http
        .received()
        .iter()
        .filter_map(|r| {
            let tx = r.json()["body"].as_str()?.split(' ').next()?.to_string();
            Some(r.at_ms.saturating_sub(*published.get(&tx)?) as f64)
        })
        .collect();
    assert_eq!(latencies.len(), 200, "every notification maps to its match record");
    let (p50, p99, max) = percentiles(latencies);
    eprintln!(
        "latency block published → notification received over 200 matches: p50 {p50} ms, p99 {p99} ms, max {max} ms"
    );
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

//! A receiver that is out for a while: its notifications wait (counted and explained on the
//! Trigger) and all arrive once it is back; with `retryFor: 0s` they are dead-lettered, and
//! `chainwatch redeliver` delivers each again, once, with the key of its first attempt.

use std::collections::HashSet;

use chainwatch_crds::Trigger;
use chainwatch_devkit::receivers::Received;
use chainwatch_devkit::testbed::kafka_bootstrap;
use kube::api::Api;
use serde_json::json;

use crate::bed::{Bed, T};
use crate::harness::{condition, eventually};

const THRESHOLD: u64 = 10_000_000_000;

fn about<'a>(requests: &'a [Received], tx: &str) -> Vec<&'a Received> {
    requests.iter().filter(|r| String::from_utf8_lossy(&r.body).contains(tx)).collect()
}

/// The Idempotency-Keys of these requests.
fn keys(requests: &[&Received]) -> HashSet<String> {
    requests.iter().filter_map(|r| r.header("Idempotency-Key").map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_receiver_is_waited_out_and_every_notification_arrives() {
    let bed = Bed::start(&[]).await;
    bed.http.answer_always(503);
    bed.webhook("hook", "/hook").await; // the default retry policy: retried through an outage
    bed.monitor("large", &format!("value > {THRESHOLD}"), &["hook"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;
    let mut txs = Vec::new();
    for to in 1..=3 {
        txs.push(bed.transfer(to, THRESHOLD * 2).await);
    }

    // out: the notifications wait, and the Trigger says so; nothing is counted as failed
    let triggers: Api<Trigger> = Api::namespaced(bed.client.clone(), &bed.ns);
    let (status, message) = eventually("the waiting notifications on the Trigger", T, || async {
        let t = triggers.get("hook").await.ok()?;
        let (s, reason, message) = condition(&t, "Delivering")?;
        let waiting = t.status.as_ref()?.pending_count.unwrap_or(0);
        (s == "False" && reason == "Retrying" && waiting >= 3).then(|| (t.status.clone().unwrap(), message))
    })
    .await;
    assert!(message.contains("waiting for a retry") && message.contains("503"), "{message}");
    assert_eq!(status.failure_count.unwrap_or(0), 0, "waiting is not failing: {:?}", status.last_error);
    // past upstream's retries (the first attempt and 3 quick ones): the outage schedule
    let http = &bed.http;
    eventually("a retry after the quick ones for every transfer", T, || async {
        let refused = http.refused();
        txs.iter().all(|tx| about(&refused, tx).len() >= 5).then_some(())
    })
    .await;
    assert!(bed.http.received().is_empty());

    // back: every notification arrives, once, with the key it was first tried with
    bed.http.answer_always(200);
    eventually("every notification after the outage", T, || async {
        let got = http.received();
        txs.iter().all(|tx| !about(&got, tx).is_empty()).then_some(())
    })
    .await;
    let (got, refused) = (bed.http.received(), bed.http.refused());
    for tx in &txs {
        let delivered = about(&got, tx);
        assert_eq!(delivered.len(), 1, "{tx} delivered once");
        let tried = about(&refused, tx);
        assert_eq!(keys(&tried), keys(&delivered), "{tx}: one Idempotency-Key across every attempt");
    }
    eventually("the Trigger delivering again, nothing waiting", T, || async {
        let t = triggers.get("hook").await.ok()?;
        let (s, _, _) = condition(&t, "Delivering")?;
        (s == "True" && t.status.as_ref()?.pending_count == Some(0)).then_some(())
    })
    .await;
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

/// `chainwatch redeliver` for this test's namespace.
async fn redeliver(ns: &str) -> String {
    let out = tokio::process::Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!(
        "CARGO_BIN_EXE_chainwatch"
    )))
    .args(["redeliver", "--namespace", ns, &format!("--kafka-bootstrap={}", kafka_bootstrap())])
    .env("CHAINWATCH_LOG", "warn")
    .output()
    .await
    .expect("running chainwatch redeliver");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "chainwatch redeliver: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_shows_on_the_trigger_and_redeliver_sends_each_notification_once() {
    let bed = Bed::start(&[]).await;
    bed.http.answer_always(500);
    // upstream's behaviour: given up on after the quick retries
    bed.apply(json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "hook", "namespace": bed.ns},
        "spec": {"webhook": {"url": bed.http.url("/hook")}, "message": {"title": "${monitor.name}", "body": "${transaction.hash} ${events.0.args.value}"},
                 "retryPolicy": {"maxRetries": 1, "initialBackoff": "50ms", "maxBackoff": "200ms", "retryFor": "0s"}}})).await;
    bed.monitor("large", &format!("value > {THRESHOLD}"), &["hook"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester();
    let mut worker = bed.worker("w0");
    ingester.ready().await;
    worker.ready().await;
    let tx = bed.transfer(1, THRESHOLD * 2).await;

    // the token's mint and the transfer: retried, then dead-lettered, counted and explained
    let triggers: Api<Trigger> = Api::namespaced(bed.client.clone(), &bed.ns);
    let s = eventually("both failures on the Trigger", T, || async {
        let s = triggers.get("hook").await.ok()?.status?;
        (s.failure_count.unwrap_or(0) >= 2).then_some(s)
    })
    .await;
    let error = s.last_error.expect("lastError");
    assert!(error.contains("500"), "{error}");
    assert!(s.last_error_time.is_some());
    assert_eq!(s.delivered_count.unwrap_or(0), 0);
    assert_eq!(about(&bed.http.refused(), &tx).len(), 2, "the first attempt and one retry");

    // back, and redelivered: each once, with the key of its first attempt
    bed.http.answer_always(200);
    let first = redeliver(&bed.ns).await;
    assert!(first.contains("2 notification(s) delivered again"), "{first}");
    let http = &bed.http;
    eventually("the redelivered notifications", T, || async { (http.received().len() >= 2).then_some(()) })
        .await;
    let delivered = bed.http.received();
    assert_eq!(about(&delivered, &tx).len(), 1, "{delivered:?}");
    assert_eq!(keys(&about(&delivered, &tx)), keys(&about(&bed.http.refused(), &tx)));
    let second = redeliver(&bed.ns).await;
    assert!(second.contains("0 notification(s) delivered again"), "{second}");
    assert!(second.contains("2 redelivered by an earlier run"), "{second}");
    eventually("the deliveries counted on the Trigger", T, || async {
        let s = triggers.get("hook").await.ok()?.status?;
        (s.delivered_count.unwrap_or(0) >= 2).then_some(())
    })
    .await;
    assert_eq!(bed.http.received().len(), 2, "nothing delivered twice");
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

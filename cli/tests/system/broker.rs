//! The broker killed (SIGKILL) and back, with the processes: the ingester and the worker stop being
//! ready while it is gone, the Network says since when, and both are ready again when it is back.
//! On a private broker, so the test bed's stays up.

use chainwatch_crds::Network;
use chainwatch_devkit::broker::Broker;
use kube::api::Api;

use crate::bed::{Bed, T};
use crate::harness::{condition, eventually, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_broker_nothing_is_ready_and_readiness_returns() {
    let bed = Bed::start(&[]).await;
    let mut broker = Broker::spawn().await.unwrap();
    let on = format!("--kafka-bootstrap={}", broker.bootstrap());
    bed.webhook("hook", "/hook").await;
    bed.monitor("large", "value > 1000", &["hook"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester_with(std::slice::from_ref(&on));
    ingester.ready().await; // the block topic exists on the broker
    let mut worker = bed.worker_with(None, std::slice::from_ref(&on));
    worker.ready().await;
    let first = bed.transfer(1, 5000).await;
    eventually("the first notification", T, || async {
        bed.http.received().iter().any(|r| String::from_utf8_lossy(&r.body).contains(&first)).then_some(())
    })
    .await;

    broker.kill().await;
    eventually("ingester and worker not ready", T, || async {
        (!ingester.is_ready().await && !worker.is_ready().await).then_some(())
    })
    .await;
    let networks: Api<Network> = Api::all(bed.client.clone());
    let (_, reason, message) = eventually("BrokerReachable False", T, || async {
        condition(&get(&networks, &bed.network).await, "BrokerReachable").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(reason, "BrokerUnreachable");
    assert!(message.contains("broker unreachable since"), "{message}");

    broker.start().await.unwrap();
    ingester.ready().await;
    worker.ready().await;
    eventually("BrokerReachable True", T, || async {
        condition(&get(&networks, &bed.network).await, "BrokerReachable").filter(|c| c.0 == "True")
    })
    .await;
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

/// A broker SIGKILLed and back after 5 s without the topics made just before (the test broker
/// had not written them down): the worker and ingester create their topics again, and a transfer
/// made as the broker comes back is notified. Prints the time from the restart to the notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_after_the_broker_restart_is_notified() {
    let bed = Bed::start(&[]).await;
    let mut broker = Broker::spawn().await.unwrap();
    let on = format!("--kafka-bootstrap={}", broker.bootstrap());
    bed.webhook("hook", "/hook").await;
    bed.monitor("large", "value > 1000", &["hook"]).await;
    bed.admitted("large").await;
    let mut ingester = bed.ingester_with(std::slice::from_ref(&on));
    ingester.ready().await;
    let mut worker = bed.worker_with(None, std::slice::from_ref(&on));
    worker.ready().await;
    broker.kill().await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    broker.start().await.unwrap();
    let restarted = std::time::Instant::now();
    let after = bed.transfer(1, 6000).await;
    eventually("a notification of a transfer made after the restart", T, || async {
        bed.http.received().iter().any(|r| String::from_utf8_lossy(&r.body).contains(&after)).then_some(())
    })
    .await;
    eprintln!(
        "broker restart: the transfer notified {:.1} s after the broker was back",
        restarted.elapsed().as_secs_f64()
    );
    ingester.ready().await;
    worker.ready().await;
    worker.stop().await;
    ingester.stop().await;
    bed.stop().await;
}

//! Two operator replicas: only the Lease holder reconciles and writes; when it stops (SIGTERM drain
//! releases the Lease) the other takes over at once. Candidates whose clocks disagree never both
//! lead.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use chainwatch_operator::leader::{LeaderElection, WallClock};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use chainwatch_crds::Network;
use chainwatch_devkit::testbed::unique;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::harness::{self, Operator, eventually, get};

const T: Duration = Duration::from_secs(30);
const RECONCILES: &str = "chainwatch_operator_reconciles_total{controller=\"network\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_writes() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-op").await;
    let a = Operator::start(&ns, "replica-a", &["--no-kafka"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        leases.get_opt("chainwatch-operator").await.unwrap().and_then(|l| l.spec?.holder_identity)
    };
    eventually("replica-a leads", T, || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = Operator::start(&ns, "replica-b", &["--no-kafka"]).await;
    eventually("replica-b serves metrics", T, || async { (!b.metrics().await.is_empty()).then_some(()) })
        .await;

    let net = unique("lead");
    let network = |confirmations: u32| {
        json!({"apiVersion": "chainwatch.io/v1alpha1", "kind": "Network", "metadata": {"name": net},
        "spec": {"type": "evm", "rpc": [{"url": "http://127.0.0.1:1"}], "confirmations": confirmations}})
    };
    harness::apply_value(&client, &network(1)).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let worker = format!("chainwatch-worker-{net}");
    eventually("children written", T, || async { deployments.get_opt(&worker).await.unwrap() }).await;
    eventually("the Network's status written", T, || async {
        get(&Api::<Network>::all(client.clone()), &net).await.status
    })
    .await;
    assert!(a.metric(RECONCILES).await >= 1.0);
    assert_eq!(a.metric("chainwatch_operator_leader").await, 1.0);
    assert_eq!(b.metric(RECONCILES).await, 0.0, "the standby does not reconcile");
    assert_eq!(b.metric("chainwatch_operator_leader").await, 0.0);
    // the Network's event follows its status write: wait for it, then check who wrote them all
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let instances: Vec<String> = eventually("an event about the Network", T, || async {
        let instances: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reporting_instance)
            .collect();
        (!instances.is_empty()).then_some(instances)
    })
    .await;
    assert!(instances.iter().all(|i| i == "replica-a"), "events by {instances:?}");

    // the leader drains: B takes over without waiting for the Lease to expire
    let stopped = std::time::Instant::now();
    a.stop().await;
    eventually("replica-b leads", T, || async {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    harness::apply_value(&client, &network(2)).await.unwrap();
    eventually("replica-b reconciles", T, || async { (b.metric(RECONCILES).await >= 1.0).then_some(()) })
        .await;
    assert_eq!(b.metric("chainwatch_operator_leader").await, 1.0);
    eprintln!("takeover after the leader stopped: {took:?}");
    b.stop().await;
    harness::reset(&client).await;
}

/// How many candidates lead at once, and what went wrong.
#[derive(Default)]
struct Leaders {
    now: AtomicI32,
    /// Times a candidate became leader while another led.
    overlaps: AtomicU32,
}

/// A candidate that leads whenever it wins, "runs controllers" until its leadership stops, and
/// then steps down without releasing the Lease (as a killed process would leave it). Returns how
/// often it became leader.
fn candidate(
    election: LeaderElection,
    leaders: Arc<Leaders>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut won = 0;
        while let Some(leadership) = election.lead(stop.clone()).await {
            won += 1;
            if leaders.now.fetch_add(1, Ordering::SeqCst) > 0 {
                leaders.overlaps.fetch_add(1, Ordering::SeqCst);
                eprintln!("{} became leader while another led", election.identity);
            }
            leadership.stop.cancelled().await;
            leaders.now.fetch_sub(1, Ordering::SeqCst);
            leadership.step_down(false).await;
            if stop.is_cancelled() {
                break;
            }
        }
        won
    })
}

fn clock(skew_seconds: i64) -> WallClock {
    Arc::new(move || Timestamp::now() + SignedDuration::from_secs(skew_seconds))
}

/// One candidate leads, a second one whose wall clock is `skew` seconds off contends for 3 lease
/// durations and must not lead; then the first dies without releasing the Lease, and the second
/// takes over, after the lease duration and not before.
async fn skewed_candidates(api: Api<Lease>, lease: &str, skew: i64) {
    let d = Duration::from_secs(4);
    let leaders = Arc::new(Leaders::default());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = LeaderElection::new(api.clone(), lease, "a", d);
    let a_task = candidate(a, leaders.clone(), stop_a.clone());
    eventually("a leads", T, || async { (leaders.now.load(Ordering::SeqCst) == 1).then_some(()) }).await;
    let b = LeaderElection::new(api.clone(), lease, "b", d).with_clock(clock(skew));
    let b_task = candidate(b, leaders.clone(), stop_b.clone());
    tokio::time::sleep(3 * d).await;
    let holder = api.get(lease).await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some("a"), "clock skew {skew:+} s: the contender took a renewed lease");

    // a dies: its renewals stop, the Lease stays as it left it
    let died = std::time::Instant::now();
    stop_a.cancel();
    assert_eq!(a_task.await.unwrap(), 1);
    eventually("b leads after a died", T, || async {
        (api.get(lease).await.unwrap().spec?.holder_identity.as_deref() == Some("b")).then_some(())
    })
    .await;
    let took = died.elapsed();
    stop_b.cancel();
    assert_eq!(b_task.await.unwrap(), 1);
    assert_eq!(leaders.overlaps.load(Ordering::SeqCst), 0, "clock skew {skew:+} s: two leaders at once");
    eprintln!("clock skew {skew:+} s: b took over {took:?} after a died (lease {d:?})");
    // a's last renewal began at most an eighth of the duration (and a request) before it died
    assert!(took >= d * 3 / 4, "clock skew {skew:+} s: took over after {took:?}, before the lease expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_whose_clocks_disagree_by_30_seconds_never_both_lead() {
    let client = harness::clean_slate().await;
    let ns = harness::new_namespace(&client, "cw-lease").await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // ahead: reads the holder's renewals as 30 s old; behind: as 30 s in the future
    tokio::join!(skewed_candidates(api.clone(), "ahead", 30), skewed_candidates(api.clone(), "behind", -30));
    harness::reset(&client).await;
}

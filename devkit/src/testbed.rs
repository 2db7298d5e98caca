//! Test support: where tests find the real parts `scripts/testbed.sh up` started (environment variables), with
//! an error that says how to start them.

fn var(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start {what} with `scripts/testbed.sh up` and `source <(scripts/testbed.sh env)`, or run `just test`")
    })
}

/// The Kafka-protocol broker.
pub fn kafka_bootstrap() -> String {
    var("KAFKA_BOOTSTRAP", "the Kafka-protocol broker")
}

/// The shared anvil's JSON-RPC URL.
pub fn evm_rpc_url() -> String {
    var("EVM_RPC_URL", "anvil")
}

/// The anvil binary, for tests that run their own chain.
pub fn anvil_bin() -> String {
    var("ANVIL_BIN", "anvil")
}

/// A kubeconfig of the test API server for `user` (a ServiceAccount as
/// `system:serviceaccount:NS:NAME`) in `groups`: RBAC decides what it may do.
pub fn kubeconfig_for(user: &str, groups: &[&str]) -> std::path::PathBuf {
    let bin = var("KUBE_TESTENV_BIN", "the API server (kube-testenv)");
    let out = std::process::Command::new(&bin)
        .arg("kubeconfig")
        .arg(user)
        .args(groups)
        .output()
        .unwrap_or_else(|e| panic!("running {bin} kubeconfig: {e}"));
    assert!(out.status.success(), "{bin} kubeconfig {user}: {}", String::from_utf8_lossy(&out.stderr));
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default())
}

/// A name unique to this test run, for topics, groups and namespaces.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Reads the records (payloads) of `topic` from the beginning, in a fresh consumer group, handing
/// each to `each` until it returns `true` (enough) or `within` passes. Returns whether it was enough.
pub async fn read_topic(topic: &str, within: std::time::Duration, each: impl FnMut(Vec<u8>) -> bool) -> bool {
    read_topic_of(&kafka_bootstrap(), topic, within, each).await
}

/// [`read_topic`] on the broker at `bootstrap`.
pub async fn read_topic_of(
    bootstrap: &str,
    topic: &str,
    within: std::time::Duration,
    mut each: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    use chainwatch_platform::bus::Consumer;
    let consumer = chainwatch_platform::bus::kafka::KafkaArgs::new(bootstrap.to_string())
        .consumer(&unique("reader"), &[topic])
        .expect("a Kafka consumer");
    // records that came in parts, whole
    let consumer = chainwatch_platform::bus::parts::Reassembling::new(std::sync::Arc::new(consumer));
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => {
                if each(m.payload) {
                    return true;
                }
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => return false,
        }
    }
}

/// A local TCP port free now, for a server a test starts and must name before it listens (a
/// process's `--admin-addr`, a broker restarted on the same port). Chosen at random below the
/// kernel's ephemeral range: a port from `bind(…:0)` is ephemeral, and under load an outgoing
/// connection of any process can take it between the check and the server's own bind (a worker
/// failed with "Address already in use" that way).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    for i in 0..1000u64 {
        // splitmix64 of (seed, call, attempt): spread over the range
        let mut x =
            seed.wrapping_add((N.fetch_add(1, Ordering::Relaxed) + i).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let port = low + (x % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The `chainwatch` binary a test runs: nextest's `NEXTEST_BIN_EXE_chainwatch` when set (the
/// binary extracted from an archive, which a build in the shared target dir cannot replace under
/// a running loop), otherwise `compiled` (the test's `env!("CARGO_BIN_EXE_chainwatch")`).
pub fn chainwatch_bin(compiled: &str) -> String {
    std::env::var("NEXTEST_BIN_EXE_chainwatch").unwrap_or_else(|_| compiled.to_string())
}

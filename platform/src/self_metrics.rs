//! What every process says about itself on `/metrics`, whatever it does: `chainwatch_build_info`
//! (version and commit, always 1) and the standard `process_*` families (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, start time), read from `/proc` at each
//! scrape. Outside Linux the `process_*` families stay at zero.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `/proc`'s clock tick (USER_HZ): 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

static BUILD: OnceLock<(&'static str, &'static str)> = OnceLock::new();

/// Names the version and commit `chainwatch_build_info` reports (the binary calls it once, at
/// start; the crate's version and "unknown" otherwise).
pub fn set_build(version: &'static str, commit: &'static str) {
    let _ = BUILD.set((version, commit));
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// The `process_*` metrics, refreshed before each encoding.
#[derive(Clone, Default)]
pub struct ProcessMetrics {
    cpu_seconds: Counter<f64, AtomicU64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers `chainwatch_build_info` and the `process_*` families.
    pub fn register(registry: &mut Registry) -> Self {
        let (version, commit) = BUILD.get().copied().unwrap_or((env!("CARGO_PKG_VERSION"), "unknown"));
        let info = Family::<BuildLabels, Gauge>::default();
        info.get_or_create(&BuildLabels { version: version.into(), commit: commit.into() }).set(1);
        registry.register(
            "chainwatch_build_info",
            "The version and commit this process runs (always 1)",
            info,
        );
        let m = Self::default();
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            m.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.resident.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            m.virtual_memory.clone(),
        );
        registry.register("process_open_fds", "Open file descriptors", m.open_fds.clone());
        registry.register("process_max_fds", "Maximum number of open file descriptors", m.max_fds.clone());
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            m.start_time.clone(),
        );
        m.refresh();
        m
    }

    /// Reads `/proc` again (what cannot be read keeps its last value).
    pub fn refresh(&self) {
        if let Some(stat) = read("/proc/self/stat") {
            // fields after the command name, which is in parentheses and may contain spaces
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                let seconds = (user + system) as f64 / TICKS_PER_SECOND;
                let delta = seconds - self.cpu_seconds.get();
                if delta > 0.0 {
                    self.cpu_seconds.inc_by(delta);
                }
            }
            if let Some(bytes) = field(23) {
                self.virtual_memory.set(bytes as i64);
            }
            if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                self.start_time.set(boot + start as f64 / TICKS_PER_SECOND);
            }
        }
        if let Some(kib) = read("/proc/self/status").and_then(|s| status_kib(&s, "VmRSS:")) {
            self.resident.set((kib * 1024) as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = read("/proc/self/limits").and_then(|l| max_open_files(&l)) {
            self.max_fds.set(max as i64);
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

static BOOT: AtomicU64 = AtomicU64::new(0);

/// The boot time (`btime` of /proc/stat), in seconds since the epoch.
fn boot_time() -> Option<f64> {
    let cached = BOOT.load(Ordering::Relaxed);
    if cached > 0 {
        return Some(cached as f64);
    }
    let btime: u64 =
        read("/proc/stat")?.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    BOOT.store(btime, Ordering::Relaxed);
    Some(btime as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_there_with_this_process_values() {
        let mut registry = Registry::default();
        let m = ProcessMetrics::register(&mut registry);
        // burn some CPU and open a file so both show
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let _file = std::fs::File::open("/proc/self/stat").unwrap();
        m.refresh();
        let text = crate::admin::encode(&registry);
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        };
        assert!(text.contains("chainwatch_build_info{version=\""), "{text}");
        assert!(value("process_cpu_seconds_total") > 0.0);
        let rss = value("process_resident_memory_bytes");
        assert!(rss > 1e6 && rss < 1e10, "{rss}");
        assert!(value("process_virtual_memory_bytes") >= rss);
        assert!(value("process_open_fds") >= 4.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(started <= now && now - started < 3600.0, "started {started}, now {now}");
    }
}

//! Operator metrics: reconciles, errors by category, durations, per controller.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use chainwatch_platform::cache::CacheMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ctl {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CtlCat {
    controller: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindReady {
    kind: String,
    ready: String,
}

/// What an object's `Ready` says of its current generation: `true`, `false`, or `unknown` (not
/// reconciled yet, or not for this generation).
pub const READINESS: [&str; 3] = ["true", "false", "unknown"];

#[derive(Clone)]
pub struct OperatorMetrics {
    objects: Family<KindReady, Gauge>,
    reconciles: Family<Ctl, Counter>,
    errors: Family<CtlCat, Counter>,
    duration: Family<Ctl, Histogram>,
    leader: Gauge,
    admitted: Gauge,
    /// The caches' families (`cached_objects`, `malformed_objects_total`, `watch_errors_total`).
    pub cache: CacheMetrics,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self {
            objects: Family::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15))),
            leader: Gauge::default(),
            admitted: Gauge::default(),
            cache: CacheMetrics::default(),
        }
    }
}

impl OperatorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("chainwatch_operator");
        let mut m = m;
        m.cache = CacheMetrics::register(r);
        // every family present at zero
        for controller in ["network", "monitor", "trigger", "tenant"] {
            let l = Ctl { controller: controller.into() };
            let _ = m.reconciles.get_or_create(&l);
            let _ = m.duration.get_or_create(&l);
            for category in crate::error::Error::CATEGORIES {
                let _ = m
                    .errors
                    .get_or_create(&CtlCat { controller: controller.into(), category: category.into() });
            }
        }
        r.register("reconciles", "Reconciles by controller", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Failed reconciles by controller and error category",
            m.errors.clone(),
        );
        r.register("reconcile_duration_seconds", "Reconcile durations by controller", m.duration.clone());
        r.register("leader", "1 while this replica holds the leader lease", m.leader.clone());
        r.register(
            "objects",
            "Networks, Monitors, Triggers and Tenants by what Ready says of their current generation (true, false, unknown)",
            m.objects.clone(),
        );
        for kind in ["Network", "Monitor", "Trigger", "Tenant"] {
            for ready in READINESS {
                let _ = m.objects.get_or_create(&KindReady { kind: kind.into(), ready: ready.into() });
            }
        }
        r.register(
            "monitors_admitted",
            "Monitors admitted at their last reconcile (Ready=True)",
            m.admitted.clone(),
        );
        m
    }

    pub fn reconciled(&self, controller: &str, took: Duration) {
        let l = Ctl { controller: controller.into() };
        self.reconciles.get_or_create(&l).inc();
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
    }

    pub fn error(&self, controller: &str, category: &str) {
        debug_assert!(
            crate::error::Error::CATEGORIES.contains(&category),
            "{category} is not in Error::CATEGORIES"
        );
        self.errors.get_or_create(&CtlCat { controller: controller.into(), category: category.into() }).inc();
    }

    /// How many objects of `kind` are Ready `true`, `false` and `unknown` (in [`READINESS`] order).
    pub fn objects(&self, kind: &str, counts: [usize; 3]) {
        for (ready, n) in READINESS.iter().zip(counts) {
            self.objects
                .get_or_create(&KindReady { kind: kind.into(), ready: (*ready).into() })
                .set(n as i64);
        }
    }

    pub fn leader(&self, is: bool) {
        self.leader.set(i64::from(is));
    }

    /// Monitors currently admitted (Ready=True), as the caches see them.
    pub fn set_admitted(&self, n: usize) {
        self.admitted.set(n as i64);
    }
}

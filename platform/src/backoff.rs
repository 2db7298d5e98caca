//! Exponential backoff with optional full jitter (RPC retries, notification retries).

use std::time::Duration;

/// `initial * base^attempt`, capped at `max`; with `full_jitter` a uniform draw in `[0, that]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub base: u32,
    pub full_jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(250), max: Duration::from_secs(10), base: 2, full_jitter: true }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = (self.base.max(1) as f64).powi(attempt.min(62) as i32);
        let nominal = self.initial.as_secs_f64() * factor;
        let capped = nominal.min(self.max.as_secs_f64());
        let secs = if self.full_jitter { capped * rand::random::<f64>() } else { capped };
        Duration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let b = Backoff { full_jitter: false, ..Default::default() };
        assert_eq!(b.delay(0), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(10), Duration::from_secs(10));
        assert_eq!(b.delay(1000), Duration::from_secs(10));
        let j = Backoff::default();
        for a in 0..20 {
            assert!(j.delay(a) <= Duration::from_secs(10));
        }
    }
}

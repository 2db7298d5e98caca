//! Which chain an endpoint serves. An endpoint is asked before its first use and again every
//! [`Identity::recheck`] while it is used (EVM `eth_chainId`, Stellar `getNetwork`'s passphrase);
//! one that answers another chain is taken out of rotation and asked again after
//! [`Identity::wrong_recheck`], so a fixed endpoint comes back by itself.
//!
//! Without an expected value (an EVM Network without `chainId`), the first endpoint's answer
//! becomes the reference and every other endpoint must agree with it.

use std::time::{Duration, Instant};

use serde_json::Value;

/// How an endpoint's chain is asked and compared.
#[derive(Clone, Debug)]
pub struct Identity {
    pub method: &'static str,
    pub params: Value,
    /// What is compared, in messages: "chain id", "network passphrase".
    pub what: &'static str,
    /// The Network's value; `None`: the first answer.
    pub expected: Option<String>,
    /// Reads the compared value out of the answer.
    pub read: fn(&Value) -> Option<String>,
    /// How long a verified endpoint stays verified.
    pub recheck: Duration,
    /// How long an endpoint of another chain stays out.
    pub wrong_recheck: Duration,
}

/// Default time a verified endpoint is trusted before it is asked again.
pub const RECHECK: Duration = Duration::from_secs(300);
/// Default time an endpoint of another chain stays out before it is asked again.
pub const WRONG_RECHECK: Duration = Duration::from_secs(60);

impl Identity {
    /// EVM: `eth_chainId`, a quantity, compared as a decimal number.
    pub fn evm(chain_id: Option<u64>) -> Self {
        Self {
            method: "eth_chainId",
            params: Value::Array(vec![]),
            what: "chain id",
            expected: chain_id.map(|c| c.to_string()),
            read: |v| {
                let q = chainwatch_core::block::evm::parse_quantity(v.as_str()?)?;
                Some(q.to_string())
            },
            recheck: RECHECK,
            wrong_recheck: WRONG_RECHECK,
        }
    }

    /// Stellar: `getNetwork`'s `passphrase`.
    pub fn stellar(passphrase: Option<String>) -> Self {
        Self {
            method: "getNetwork",
            params: Value::Object(Default::default()),
            what: "network passphrase",
            expected: passphrase,
            read: |v| v.get("passphrase")?.as_str().map(str::to_string),
            recheck: RECHECK,
            wrong_recheck: WRONG_RECHECK,
        }
    }

    /// Both re-check intervals at once (tests, `--verify-endpoints-every`).
    pub fn every(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self.wrong_recheck = recheck.min(self.wrong_recheck);
        self
    }
}

/// What is known about one endpoint's chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Checked {
    /// Not asked yet.
    #[default]
    Never,
    /// Serves the Network's chain (as of `at`).
    Serves { at: Instant },
    /// Serves another chain: out of rotation until asked again.
    Wrong { found: String, expected: String, at: Instant },
}

impl Checked {
    /// Whether the endpoint may take requests without being asked first.
    pub fn trusted(&self, id: &Identity, now: Instant) -> bool {
        matches!(self, Checked::Serves { at } if now.duration_since(*at) < id.recheck)
    }

    /// Whether the endpoint is out of rotation (another chain, not due to be asked again).
    pub fn excluded(&self, id: &Identity, now: Instant) -> bool {
        matches!(self, Checked::Wrong { at, .. } if now.duration_since(*at) < id.wrong_recheck)
    }
}

/// The verdict on one answer: `Ok` when it names the expected chain (the expected value is the
/// reference when the Network has none), else the value found.
pub fn judge(id: &Identity, reference: Option<&str>, answer: &Value) -> Result<String, String> {
    let found = (id.read)(answer).unwrap_or_else(|| format!("an unreadable answer ({answer})"));
    match id.expected.as_deref().or(reference) {
        Some(expected) if expected != found => Err(found),
        _ => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evm_chain_ids_compare_as_numbers() {
        let id = Identity::evm(Some(1));
        assert_eq!(judge(&id, None, &json!("0x1")), Ok("1".into()));
        assert_eq!(judge(&id, None, &json!("0x7a69")), Err("31337".into()));
        assert!(judge(&id, None, &json!(null)).unwrap_err().contains("unreadable"));
    }

    #[test]
    fn without_an_expected_value_the_reference_decides() {
        let id = Identity::evm(None);
        assert_eq!(judge(&id, None, &json!("0x7a69")), Ok("31337".into()));
        assert_eq!(judge(&id, Some("31337"), &json!("0x7a69")), Ok("31337".into()));
        assert_eq!(judge(&id, Some("31337"), &json!("0x1")), Err("1".into()));
    }

    #[test]
    fn stellar_passphrase() {
        let id = Identity::stellar(Some("Test SDF Network ; September 2015".into()));
        let ok = json!({"passphrase": "Test SDF Network ; September 2015", "protocolVersion": 22});
        assert!(judge(&id, None, &ok).is_ok());
        let public = json!({"passphrase": "Public Global Stellar Network ; September 2015"});
        assert_eq!(judge(&id, None, &public), Err("Public Global Stellar Network ; September 2015".into()));
    }

    #[test]
    fn trust_and_exclusion_expire() {
        let id = Identity::evm(Some(1)).every(Duration::from_secs(10));
        let t0 = Instant::now();
        let serves = Checked::Serves { at: t0 };
        assert!(serves.trusted(&id, t0 + Duration::from_secs(9)));
        assert!(!serves.trusted(&id, t0 + Duration::from_secs(10)));
        let wrong = Checked::Wrong { found: "2".into(), expected: "1".into(), at: t0 };
        assert!(wrong.excluded(&id, t0 + Duration::from_secs(9)));
        assert!(!wrong.excluded(&id, t0 + Duration::from_secs(10)));
        assert!(!Checked::Never.trusted(&id, t0) && !Checked::Never.excluded(&id, t0));
    }
}

//! Seen and final: the two moments a block can be notified at, and the one rule deciding which
//! notification a match of a Monitor gets for a block in a given phase.
//!
//! A Network with `publishSeen: true` publishes each block when it is first at the chain's head
//! ([`BlockPhase::Seen`]) and again when it reaches the confirmation depth ([`BlockPhase::Final`]);
//! a block already that deep when it is first read (catch-up, backfill, every block of a Network
//! without `publishSeen`) is published once ([`BlockPhase::Once`]).

use chainwatch_crds::NotifyPhase;
use serde::{Deserialize, Serialize};

/// Which publication of a block a block record is (wire format v1.5; absent: `Once`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockPhase {
    /// Published once, already at the confirmation depth.
    #[default]
    Once,
    /// At the head, not yet at the confirmation depth.
    Seen,
    /// Reached the confirmation depth after it was published as `Seen`.
    Final,
}

impl BlockPhase {
    pub fn is_once(&self) -> bool {
        *self == BlockPhase::Once
    }
}

/// How a Monitor that is told at `notify_at` (empty: `final` only) hears of a match in a block of
/// `block` phase: `None` — not at all; `Some(None)` — one notification, as every Monitor without
/// `seen` gets; `Some(Some(p))` — the notification of phase `p` (its key and payload say so).
///
/// A Monitor told at `seen` and `final` gets `seen` for a `Seen` block and `final` for a `Final`
/// or `Once` one (a block final when first read was never only seen: one notification, `final`).
/// A Monitor told at `seen` only gets `seen` at the first publication, whichever it is.
pub fn notified(notify_at: &[NotifyPhase], block: BlockPhase) -> Option<Option<NotifyPhase>> {
    let seen = notify_at.contains(&NotifyPhase::Seen);
    let at_final = notify_at.is_empty() || notify_at.contains(&NotifyPhase::Final);
    let labelled = |p: NotifyPhase| if seen { Some(p) } else { None };
    match block {
        BlockPhase::Seen => seen.then_some(Some(NotifyPhase::Seen)),
        BlockPhase::Final => at_final.then(|| labelled(NotifyPhase::Final)),
        BlockPhase::Once if at_final => Some(labelled(NotifyPhase::Final)),
        BlockPhase::Once => Some(Some(NotifyPhase::Seen)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotifyPhase::{Final, Seen};

    #[test]
    fn each_monitor_hears_of_a_block_once_per_phase_it_asked_for() {
        type Told = Option<Option<NotifyPhase>>;
        let cases: [(&[NotifyPhase], [Told; 3]); 4] = [
            // (notifyAt, [Once, Seen, Final])
            (&[], [Some(None), None, Some(None)]),
            (&[Final], [Some(None), None, Some(None)]),
            (&[Seen, Final], [Some(Some(Final)), Some(Some(Seen)), Some(Some(Final))]),
            (&[Seen], [Some(Some(Seen)), Some(Some(Seen)), None]),
        ];
        for (notify_at, want) in cases {
            let got = [BlockPhase::Once, BlockPhase::Seen, BlockPhase::Final].map(|b| notified(notify_at, b));
            assert_eq!(got, want, "notifyAt {notify_at:?}");
        }
    }
}

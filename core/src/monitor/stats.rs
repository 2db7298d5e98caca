//! What evaluating one block did, counted (per-chain matchers count, the index sums).

/// Counters of one block's evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchStats {
    pub transactions: u64,
    /// (monitor, transaction) pairs evaluated after the address gate.
    pub evaluations: u64,
    pub matches: u64,
    /// Expressions that failed at run time (the condition did not match).
    pub eval_errors: u64,
    /// Calls/logs/XDR that did not decode.
    pub decode_errors: u64,
}

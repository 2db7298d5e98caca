//! Why a record was dead-lettered: one bounded set, the `reason` of each dead letter and of
//! `chainwatch_worker_dead_letters_total{stage,reason}` (every pair exposed at zero from the start,
//! so alerts and dashboards see the series before the first dead letter).

/// A dead letter's reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The record does not decode (a wire-format or version mismatch).
    Undecodable,
    /// Evaluating a block failed after its attempts.
    EvaluationFailed,
    /// Producing a block's match records failed after its attempts.
    ProduceFailed,
    /// The match names a Trigger that does not exist (any more).
    TriggerNotFound,
    /// A script trigger of a tenant that does not allow scripts.
    ScriptsNotAllowed,
    /// Over the trigger's throttle or the tenant's notifications per minute.
    Throttled,
    /// A delivery still failing after its retries.
    RetriesExhausted,
    /// The receiver refused the delivery (a 4xx, a refused destination or redirect).
    Rejected,
}

/// The stage that dead-letters a record, and the reasons it can have.
pub const STAGES: [(&str, &[Reason]); 2] = [
    ("filter", &[Reason::Undecodable, Reason::EvaluationFailed, Reason::ProduceFailed]),
    (
        "notify",
        &[
            Reason::Undecodable,
            Reason::TriggerNotFound,
            Reason::ScriptsNotAllowed,
            Reason::Throttled,
            Reason::RetriesExhausted,
            Reason::Rejected,
        ],
    ),
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::EvaluationFailed => "evaluation_failed",
            Reason::ProduceFailed => "produce_failed",
            Reason::TriggerNotFound => "trigger_not_found",
            Reason::ScriptsNotAllowed => "scripts_not_allowed",
            Reason::Throttled => "throttled",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

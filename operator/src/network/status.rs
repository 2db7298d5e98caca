//! The Network's `Ready`, as a pure function of what the reconcile found: problems of the spec,
//! the topic, and what the ingester reports.

use chainwatch_crds::common::Condition;

use crate::conditions::{Check, WAITING_FOR_INGESTER};

/// `Ready=False` with the first problem's reason and every problem's message, if there is one.
pub fn blocked(problems: &[Check]) -> Option<Check> {
    let first = problems.first()?;
    Some(Check::new(
        "Ready",
        false,
        &first.reason,
        problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "),
    ))
}

/// `Ready`: the first spec problem, else the topic's failure, else the ingester's `Progressing`
/// (`WaitingForIngester` until it reports).
pub fn ready(
    problems: &[Check],
    topic: &Check,
    ingester: Option<&Condition>,
    ingester_name: &str,
    topic_name: &str,
) -> Check {
    if let Some(blocked) = blocked(problems) {
        return blocked;
    }
    if !topic.ok {
        return Check::new("Ready", false, &topic.reason, topic.message.clone());
    }
    match ingester {
        Some(c) if c.status == "True" => Check::new(
            "Ready",
            true,
            "Running",
            format!("ingesting into {topic_name} (the Progressing condition has the position)"),
        ),
        // not the ingester's message: it changes with every block ("waiting for block 24 (head
        // 23)"), and Ready is rewritten only when the ingester's reason does, so a copy would go
        // stale
        Some(c) => Check::new(
            "Ready",
            false,
            &c.reason,
            format!(
                "the ingester is not progressing: {} (the Progressing condition has the details)",
                c.reason
            ),
        ),
        None => Check::new(
            "Ready",
            false,
            WAITING_FOR_INGESTER,
            format!("{ingester_name} applied; the ingester has not reported progress yet"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progressing(ok: bool) -> Condition {
        Condition {
            type_: "Progressing".into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: if ok { "Ingesting" } else { "RpcUnavailable" }.into(),
            message: "at block 7".into(),
            last_transition_time: crate::conditions::now(),
            observed_generation: None,
        }
    }

    #[test]
    fn spec_then_topic_then_ingester() {
        let topic_ok = Check::new("TopicReady", true, "TopicReady", "6 partitions");
        let topic_bad = Check::new("TopicReady", false, "KafkaUnavailable", "broker down");
        let bad_spec = [Check::new("Ready", false, "InvalidSpec", "spec.pollInterval: invalid")];
        let r = |p: &[Check], t: &Check, i: Option<&Condition>| ready(p, t, i, "ing", "topic").reason;
        assert_eq!(r(&bad_spec, &topic_bad, Some(&progressing(true))), "InvalidSpec");
        assert_eq!(r(&[], &topic_bad, Some(&progressing(true))), "KafkaUnavailable");
        assert_eq!(r(&[], &topic_ok, None), WAITING_FOR_INGESTER);
        assert_eq!(r(&[], &topic_ok, Some(&progressing(false))), "RpcUnavailable");
        let running = ready(&[], &topic_ok, Some(&progressing(true)), "ing", "topic");
        assert!(running.ok && running.message.starts_with("ingesting into topic"));
        // never the ingester's changing message, which would go stale in Ready
        let stalled = ready(&[], &topic_ok, Some(&progressing(false)), "ing", "topic");
        assert!(!running.message.contains("at block 7") && !stalled.message.contains("at block 7"));
    }
}

//! What the pipeline's pods say: a pod that cannot run (its container crash-loops, its image cannot
//! be pulled, it cannot be scheduled) makes the Network `Ready=False` with the pod's own reason and
//! kstatus `Stalled` — the ingester, which would otherwise report, is the one not running.

use k8s_openapi::api::core::v1::Pod;

/// Container waiting reasons that do not resolve by waiting.
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The first pod (by name) that cannot run: (reason, message naming the pod and container).
pub fn trouble(pods: &[Pod]) -> Option<(String, String)> {
    let mut pods: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods.into_iter().find_map(pod_trouble)
}

fn pod_trouble(pod: &Pod) -> Option<(String, String)> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let containers =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for c in containers {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
        let Some(reason) = waiting.reason.as_deref().filter(|r| STUCK.contains(r)) else { continue };
        let last_exit = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| {
                format!("; last exit {} ({})", t.exit_code, t.reason.as_deref().unwrap_or("no reason given"))
            })
            .unwrap_or_default();
        let detail = waiting.message.as_deref().map(|m| format!(": {}", first_line(m))).unwrap_or_default();
        return Some((
            reason.to_string(),
            format!(
                "pod {name}, container {}: {reason}{detail}{last_exit} (restarts: {})",
                c.name, c.restart_count
            ),
        ));
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some((
        "Unschedulable".to_string(),
        format!(
            "pod {name} cannot be scheduled: {}",
            unschedulable.message.as_deref().map(first_line).unwrap_or("no node fits")
        ),
    ))
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or_default();
    &line[..line.floor_char_boundary(300)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap()
    }

    #[test]
    fn a_crash_loop_names_the_pod_the_container_and_the_last_exit() {
        let crashing = pod(
            "chainwatch-ingester-eth-0",
            json!({"containerStatuses": [{"name": "ingester", "ready": false, "restartCount": 7, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        let (reason, message) = trouble(&[crashing]).unwrap();
        assert_eq!(reason, "CrashLoopBackOff");
        assert_eq!(
            message,
            "pod chainwatch-ingester-eth-0, container ingester: CrashLoopBackOff: back-off 5m0s restarting failed container; last exit 137 (OOMKilled) (restarts: 7)"
        );
    }

    #[test]
    fn image_pulls_and_scheduling_count_but_starting_does_not() {
        let pulling = pod(
            "w-b",
            json!({"containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        let starting = pod(
            "w-a",
            json!({"containerStatuses": [{"name": "worker", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(trouble(&[pulling.clone(), starting.clone()]).unwrap().0, "ImagePullBackOff");
        assert_eq!(trouble(std::slice::from_ref(&starting)), None);
        let pending = pod(
            "w-c",
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
        );
        let (reason, message) = trouble(&[pending]).unwrap();
        assert_eq!(
            (reason.as_str(), message.as_str()),
            ("Unschedulable", "pod w-c cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory.")
        );
        assert_eq!(trouble(&[]), None);
    }
}

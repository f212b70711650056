//! A session's one task: where Swarm placed it, and its container there.

use bollard::models::{Task, TaskState};
use bollard::query_parameters::ListTasksOptionsBuilder;
use bollard::Docker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::call::{within, CallError};

/// Where a task's container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub node: String,
    pub container: String,
}

/// A task, reduced to what the engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskView {
    pub state: TaskState,
    pub placement: Option<Placement>,
    /// The exit code Swarm recorded, once the container ended.
    pub exit_code: Option<i64>,
    /// Swarm's error (`no suitable node (...)`, `No such image: ...`) or,
    /// without one, its message.
    pub why: String,
}

impl TaskView {
    fn of(t: Task) -> TaskView {
        let status = t.status.unwrap_or_default();
        let container = status
            .container_status
            .as_ref()
            .and_then(|c| c.container_id.clone())
            .filter(|c| !c.is_empty());
        let placement = match (t.node_id.filter(|n| !n.is_empty()), container) {
            (Some(node), Some(container)) => Some(Placement { node, container }),
            _ => None,
        };
        TaskView {
            state: status.state.unwrap_or(TaskState::NEW),
            placement,
            exit_code: status.container_status.and_then(|c| c.exit_code),
            why: status
                .err
                .filter(|e| !e.is_empty())
                .or(status.message)
                .unwrap_or_default(),
        }
    }

    /// The task will not run (any more).
    pub(super) fn ended(&self) -> bool {
        ended(&self.state)
    }
}

/// A state no task leaves.
pub(super) fn ended(state: &TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

/// The latest task of each service, by service id.
fn latest(tasks: Vec<Task>) -> HashMap<String, TaskView> {
    let mut by_service: HashMap<String, (u64, TaskView)> = HashMap::new();
    for t in tasks {
        let Some(service) = t.service_id.clone() else {
            continue;
        };
        let version = t.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let newer = by_service.get(&service).is_none_or(|(v, _)| version >= *v);
        if newer {
            by_service.insert(service, (version, TaskView::of(t)));
        }
    }
    by_service.into_iter().map(|(s, (_, t))| (s, t)).collect()
}

/// The task of `service`: `Ok(None)` before Swarm has made one. A service
/// that does not exist is the manager's 404.
pub(super) async fn task(
    manager: &Docker,
    service: &str,
    deadline: Duration,
) -> Result<Option<TaskView>, CallError> {
    let filters = HashMap::from([("service", vec![service])]);
    let opts = ListTasksOptionsBuilder::new().filters(&filters).build();
    let tasks = within(
        deadline,
        "manager: list tasks",
        manager.list_tasks(Some(opts)),
    )
    .await?;
    Ok(latest(tasks).remove(service))
}

/// Every service's latest task.
pub(super) async fn all(
    manager: &Docker,
    deadline: Duration,
) -> Result<HashMap<String, TaskView>, CallError> {
    let tasks = within(deadline, "manager: list tasks", manager.list_tasks(None)).await?;
    Ok(latest(tasks))
}

/// Every service's latest task, shared by all who wait for a placement:
/// one call to the manager serves them all, at most one is in flight, and
/// an answer younger than [`TaskCache::FRESH`] is reused. Thirty sessions
/// created at once each polling for their own task made the manager (and
/// the 2-core machine under it) answer a few hundred calls a second.
#[derive(Default)]
pub(super) struct TaskCache {
    last: tokio::sync::Mutex<Option<(Instant, Tasks)>>,
}

/// Every service's latest task, by service id, as one answer had them.
type Tasks = Arc<HashMap<String, TaskView>>;

impl TaskCache {
    const FRESH: Duration = Duration::from_millis(25);

    async fn get(&self, manager: &Docker, deadline: Duration) -> Result<Tasks, CallError> {
        let mut last = self.last.lock().await;
        if let Some((at, tasks)) = last.as_ref() {
            if at.elapsed() < Self::FRESH {
                return Ok(tasks.clone());
            }
        }
        let tasks = Arc::new(all(manager, deadline).await?);
        *last = Some((Instant::now(), tasks.clone()));
        Ok(tasks)
    }
}

/// Why waiting for a task's container failed.
#[derive(Debug)]
pub(super) enum NotPlaced {
    /// The task ended before it had a container (rejected: an image the
    /// node lacks; failed).
    Ended(TaskView),
    /// Still pending (no node fits, or a constraint no node meets) or
    /// starting when the time was up; or its service is gone.
    TimedOut {
        after: Duration,
        last: Option<TaskView>,
    },
    Call(CallError),
}

/// The least deadline of a call made while waiting for a placement.
const LAST_CALL: Duration = Duration::from_millis(500);

/// Polls the manager (through `cache`) until the task of `service` has a
/// container (from state `starting` on), for at most `limit`; each call
/// within `deadline`.
pub(super) async fn wait_placed(
    manager: &Docker,
    cache: &TaskCache,
    service: &str,
    limit: Duration,
    deadline: Duration,
) -> Result<Placement, NotPlaced> {
    let until = Instant::now() + limit;
    // The agent takes 0.2-0.8 s from create to start: ask often at first.
    let mut pause = Duration::from_millis(10);
    let mut last = None;
    loop {
        // Each call keeps a fair deadline even near the end, overrunning
        // the limit by at most that: a call cut to the last millisecond
        // fails for lack of time, and its error would hide the reason the
        // task is pending (a constraint no node meets, say).
        let left = until.saturating_duration_since(Instant::now());
        match cache.get(manager, deadline.min(left.max(LAST_CALL))).await {
            Ok(all) => {
                if let Some(t) = all.get(service) {
                    if let Some(p) = &t.placement {
                        return Ok(p.clone());
                    }
                    if t.ended() {
                        return Err(NotPlaced::Ended(t.clone()));
                    }
                    last = Some(t.clone());
                }
            }
            // A slow answer counts against the limit; so does a refused
            // one. Once the task was seen pending, running out of time is
            // the news, with the reason Swarm last gave.
            Err(e) if Instant::now() >= until => {
                return Err(match last {
                    Some(_) => NotPlaced::TimedOut { after: limit, last },
                    None => NotPlaced::Call(e),
                })
            }
            Err(_) => {}
        }
        if Instant::now() + pause > until {
            return Err(NotPlaced::TimedOut { after: limit, last });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerStatus, ObjectVersion, TaskStatus};

    fn task(service: &str, version: u64, state: TaskState, container: Option<&str>) -> Task {
        Task {
            service_id: Some(service.into()),
            node_id: Some("n1".into()),
            version: Some(ObjectVersion {
                index: Some(version),
            }),
            status: Some(TaskStatus {
                state: Some(state),
                err: Some("no suitable node".into()),
                container_status: Some(ContainerStatus {
                    container_id: container.map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_task_of_each_service() {
        let all = latest(vec![
            task("s1", 5, TaskState::PENDING, None),
            task("s1", 9, TaskState::RUNNING, Some("c1")),
            task("s2", 3, TaskState::REJECTED, None),
        ]);
        let s1 = &all["s1"];
        assert_eq!(
            s1.placement,
            Some(Placement {
                node: "n1".into(),
                container: "c1".into()
            })
        );
        assert!(!s1.ended());
        let s2 = &all["s2"];
        assert!(s2.ended() && s2.placement.is_none());
        assert_eq!(s2.why, "no suitable node");
    }
}

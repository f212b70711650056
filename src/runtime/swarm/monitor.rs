//! Watching the nodes: the manager is asked for their states every
//! `node_poll`. A node that goes down has its attach streams ended (the
//! sessions then end as `node_lost`); a node that comes back, or is seen for
//! the first time, is swept of ghosts.
//!
//! A ghost is a container whose service is gone (the controller removed
//! the session while the node was down or cut off), or whose session ended
//! as `node_lost`. Swarm would stop it once the node is back, but only with
//! the task's stop signal, which the driver ignores, and a grace as long as
//! the session's timeout (`spec.rs`), so the sweep kills it. (A lost
//! session's service stays until the session is reaped.)

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListServicesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use super::call::within;
use super::Inner;
use crate::runtime::{Result, RuntimeError};

/// The label the engine puts on a task's container: its service's id.
const SERVICE_LABEL: &str = "com.docker.swarm.service.id";

/// Asks the manager for the nodes once, and acts on what changed.
pub(super) async fn poll(inner: &Arc<Inner>) -> Result<()> {
    let list = within(
        inner.cfg.call_timeout,
        "manager: list nodes",
        inner.manager.list_nodes(None),
    )
    .await?;
    let changes = inner.nodes.update(list);
    for id in changes.lost {
        tracing::warn!(node = %inner.nodes.name(&id), "node is down: its sessions are lost");
    }
    for id in changes.back {
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = sweep(&inner, &id).await {
                tracing::warn!(node = %inner.nodes.name(&id), error = %e, "cannot sweep the node");
            }
        });
    }
    Ok(())
}

/// Polls until the engine is dropped.
pub(super) async fn run(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let every = strong.cfg.node_poll;
        if let Err(e) = poll(&strong).await {
            tracing::warn!(error = %e, "cannot ask the Swarm manager for its nodes");
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

/// Kills and removes the ghosts on node `id`.
async fn sweep(inner: &Inner, id: &str) -> Result<()> {
    let node = inner.nodes.client(id).await?;
    let name = inner.nodes.name(id);
    let deadline = inner.cfg.call_timeout;
    let ours = format!("{}.controller", inner.label_prefix);
    let filters = HashMap::from([("label".to_string(), vec![ours.clone()])]);
    // Containers first, then services: a service made in between has its
    // container made after it, so no live session counts as a ghost.
    let containers = within(
        deadline,
        format!("node {name}: list containers"),
        node.list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        )),
    )
    .await?;
    let services: HashSet<String> = within(
        deadline,
        "manager: list services",
        inner.manager.list_services(Some(
            ListServicesOptionsBuilder::new().filters(&filters).build(),
        )),
    )
    .await?
    .into_iter()
    .filter_map(|s| s.id)
    .collect();
    let kill = || KillContainerOptionsBuilder::new().signal("SIGKILL").build();
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let (Some(service), Some(container)) = (labels.get(SERVICE_LABEL), c.id) else {
            continue;
        };
        if services.contains(service) {
            let lost = super::locked(&inner.lost).contains(service);
            if lost && c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                tracing::warn!(node = %name, %container, %service,
                    "killing what still runs of a session that ended as node_lost");
                let killing = node.kill_container(&container, Some(kill()));
                let _ = within(deadline, "kill", killing).await;
            }
            continue;
        }
        tracing::warn!(node = %name, %container, %service,
            "removing a ghost: its session's service is gone");
        let _ = within(
            deadline,
            "kill",
            node.kill_container(&container, Some(kill())),
        )
        .await;
        let rm = RemoveContainerOptionsBuilder::new().force(true).build();
        let removing = node.remove_container(&container, Some(rm));
        if let Err(e) = within(deadline, "remove", removing).await {
            if !e.is_not_found() {
                return Err(RuntimeError::from(e));
            }
        }
    }
    Ok(())
}

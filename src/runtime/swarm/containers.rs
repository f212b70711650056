//! A task's container, on its node: its state, signalling and killing it. A node the
//! manager says is down is not asked: its sessions are lost.

use bollard::query_parameters::KillContainerOptionsBuilder;

use super::call::within;
use super::{locked, tasks, Inner};
use crate::runtime::{ContainerExit, ContainerState, Result, RuntimeError};

impl Inner {
    /// Kills the task's container on its node; a lost node's is out of
    /// reach (the sweep kills it when the node is back).
    pub(super) async fn kill(&self, id: &str) -> Result<()> {
        self.signal(id, "SIGKILL").await
    }

    /// Sends the task's container a signal on its node, through the node's
    /// engine API (a service has no way to signal its task). A task
    /// without a container yet is removed for a SIGKILL and left alone for
    /// a warning; a lost node's is out of reach.
    pub(super) async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let placement = match self.placement(id).await {
            Ok(p) => p,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(p) = placement else {
            if signal != "SIGKILL" {
                return Ok(());
            }
            // No container yet: without its service it never gets one.
            return self.delete_service(id).await;
        };
        if self.nodes.is_lost(&p.node) {
            locked(&self.lost).insert(id.to_string());
            return Ok(());
        }
        let node = self.nodes.client(&p.node).await?;
        let opts = KillContainerOptionsBuilder::new().signal(signal).build();
        let what = format!("node {}: kill {signal}", self.nodes.name(&p.node));
        match within(
            self.deadline(),
            what,
            node.kill_container(&p.container, Some(opts)),
        )
        .await
        {
            Ok(()) => Ok(()),
            // Gone, or not running: either way it is not running now.
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The container's state on its node.
    pub(super) async fn state(&self, id: &str) -> Result<ContainerState> {
        let p = match self.placement(id).await {
            Ok(Some(p)) => p,
            Ok(None) => return self.state_without_container(id).await,
            Err(RuntimeError::NotFound(_)) => return Ok(ContainerState::Missing),
            Err(e) => return Err(e),
        };
        let name = self.nodes.name(&p.node);
        if self.nodes.is_lost(&p.node) {
            locked(&self.lost).insert(id.to_string());
            return Ok(ContainerState::NodeLost { node: name });
        }
        let node = self.nodes.client(&p.node).await?;
        let what = format!("node {name}: inspect");
        let info = match within(
            self.deadline(),
            what,
            node.inspect_container(&p.container, None),
        )
        .await
        {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return self.state_without_container(id).await,
            // Unreachable: lost if the manager says so by now.
            Err(e) if e.is_unreachable() && self.nodes.is_lost(&p.node) => {
                locked(&self.lost).insert(id.to_string());
                return Ok(ContainerState::NodeLost { node: name });
            }
            Err(e) => return Err(e.into()),
        };
        let state = info.state.unwrap_or_default();
        use bollard::models::ContainerStateStatusEnum as S;
        if !matches!(state.status, Some(S::EXITED) | Some(S::DEAD)) {
            return Ok(ContainerState::Running);
        }
        Ok(ContainerState::Exited(ContainerExit {
            code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed.unwrap_or(false),
        }))
    }

    /// One usage sample of the task's container, from its node's engine
    /// (the stats endpoint, as for a local container). A node that is lost
    /// or a task without a container has none.
    pub(super) async fn usage(&self, id: &str) -> Result<Option<crate::runtime::UsageSample>> {
        let p = match self.placement(id).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(RuntimeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if self.nodes.is_lost(&p.node) {
            return Ok(None);
        }
        let node = self.nodes.client(&p.node).await?;
        crate::runtime::usage::sample(&node, &p.container).await
    }

    /// The state from the task alone: before it has a container, or after
    /// its container is gone.
    async fn state_without_container(&self, id: &str) -> Result<ContainerState> {
        match tasks::task(&self.manager, id, self.deadline()).await {
            Ok(Some(t)) if t.ended() => Ok(match t.exit_code {
                Some(code) => ContainerState::Exited(ContainerExit {
                    code,
                    oom_killed: false,
                }),
                None => ContainerState::Missing,
            }),
            Ok(Some(t)) if t.placement.is_some() => Ok(ContainerState::Missing),
            Ok(_) => Ok(ContainerState::Running),
            Err(e) if e.is_not_found() => Ok(ContainerState::Missing),
            Err(e) => Err(e.into()),
        }
    }
}

//! The Swarm's nodes as the manager reports them, and a client for each
//! node's engine API (made on first use, at the address the manager gives
//! and the configured port).

use bollard::models::{NodeSpecAvailabilityEnum, NodeState};
use bollard::Docker;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;
use crate::runtime::{Result, RuntimeError};

/// One node, as last reported by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub id: String,
    /// Its hostname, for people.
    pub name: String,
    /// Its address, as the manager sees it.
    pub addr: String,
    /// Down, disconnected, or no longer in the Swarm.
    pub lost: bool,
    /// Ready and active: Swarm may place new tasks on it.
    pub schedulable: bool,
}

impl Node {
    fn from_model(n: bollard::models::Node) -> Option<Node> {
        let status = n.status.unwrap_or_default();
        let spec = n.spec.unwrap_or_default();
        let state = status.state;
        Some(Node {
            id: n.id?,
            name: n
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_else(|| "?".into()),
            addr: status.addr.unwrap_or_default(),
            lost: matches!(state, Some(NodeState::DOWN) | Some(NodeState::DISCONNECTED)),
            schedulable: state == Some(NodeState::READY)
                && matches!(
                    spec.availability,
                    Some(NodeSpecAvailabilityEnum::ACTIVE) | None
                ),
        })
    }
}

struct Entry {
    node: Node,
    /// The engine client for `node.addr`, once made.
    client: Option<(String, Docker)>,
    /// Cancelled when the node is lost: ends every attach stream through it.
    lost: CancellationToken,
}

/// What changed in one update.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Nodes that were not lost and now are.
    pub lost: Vec<String>,
    /// Nodes that are reachable now and were lost, or were not known.
    pub back: Vec<String>,
}

pub(super) struct Nodes {
    table: Mutex<HashMap<String, Entry>>,
    tls: Option<TlsFiles>,
    port: u16,
    deadline: Duration,
}

impl Nodes {
    pub(super) fn new(tls: Option<TlsFiles>, port: u16, deadline: Duration) -> Nodes {
        Nodes {
            table: Mutex::new(HashMap::new()),
            tls,
            port,
            deadline,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update is a whole insert or field write.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the manager's list of nodes; a node missing from it was
    /// removed from the Swarm and counts as lost.
    pub(super) fn update(&self, list: Vec<bollard::models::Node>) -> Changes {
        let mut seen: HashMap<String, Node> = list
            .into_iter()
            .filter_map(Node::from_model)
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut changes = Changes::default();
        let mut table = self.lock();
        for (id, entry) in table.iter_mut() {
            let now = seen.remove(id).unwrap_or_else(|| Node {
                lost: true,
                schedulable: false,
                ..entry.node.clone()
            });
            if now.lost && !entry.node.lost {
                entry.lost.cancel();
                changes.lost.push(id.clone());
            } else if !now.lost && entry.node.lost {
                entry.lost = CancellationToken::new();
                changes.back.push(id.clone());
            }
            entry.node = now;
        }
        for (id, node) in seen {
            let lost = CancellationToken::new();
            if node.lost {
                lost.cancel();
            } else {
                changes.back.push(id.clone());
            }
            table.insert(
                id,
                Entry {
                    node,
                    client: None,
                    lost,
                },
            );
        }
        changes
    }

    pub(super) fn get(&self, id: &str) -> Option<Node> {
        self.lock().get(id).map(|e| e.node.clone())
    }

    /// The node's name for messages: its hostname, else its id.
    pub(super) fn name(&self, id: &str) -> String {
        self.get(id).map_or_else(|| id.to_string(), |n| n.name)
    }

    /// Whether the manager says the node is lost (an unknown node is not).
    pub(super) fn is_lost(&self, id: &str) -> bool {
        self.get(id).is_some_and(|n| n.lost)
    }

    /// Cancelled once the node is lost.
    pub(super) fn lost_token(&self, id: &str) -> CancellationToken {
        self.lock()
            .get(id)
            .map_or_else(CancellationToken::new, |e| e.lost.clone())
    }

    /// Every node.
    pub(super) fn all(&self) -> Vec<Node> {
        self.lock().values().map(|e| e.node.clone()).collect()
    }

    /// Nodes that are not lost.
    pub(super) fn reachable(&self) -> Vec<Node> {
        self.lock()
            .values()
            .filter(|e| !e.node.lost)
            .map(|e| e.node.clone())
            .collect()
    }

    /// A client of node `id`'s engine, made on first use (within the
    /// deadline).
    pub(super) async fn client(&self, id: &str) -> Result<Docker> {
        let node = self
            .get(id)
            .ok_or_else(|| RuntimeError::Engine(format!("node {id} is not in the Swarm")))?;
        if node.lost {
            return Err(RuntimeError::Engine(format!("node {} is down", node.name)));
        }
        let endpoint = format!("tcp://{}:{}", node.addr, self.port);
        let cached = self.lock().get(id).and_then(|e| e.client.clone());
        if let Some((at, docker)) = cached {
            if at == endpoint {
                return Ok(docker);
            }
        }
        let docker = super::call::connect(&endpoint, self.tls.as_ref(), self.deadline)
            .await
            .map_err(|e| RuntimeError::Engine(format!("node {}: {e}", node.name)))?;
        if let Some(e) = self.lock().get_mut(id) {
            e.client = Some((endpoint, docker.clone()));
        }
        Ok(docker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NodeDescription, NodeSpec, NodeStatus};

    fn node(id: &str, state: NodeState) -> bollard::models::Node {
        bollard::models::Node {
            id: Some(id.into()),
            description: Some(NodeDescription {
                hostname: Some(format!("host-{id}")),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(state),
                addr: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn losses_and_returns_are_reported_once() {
        let nodes = Nodes::new(None, 2375, Duration::from_secs(1));
        let c = nodes.update(vec![
            node("a", NodeState::READY),
            node("b", NodeState::READY),
        ]);
        assert_eq!(c.lost, Vec::<String>::new());
        assert_eq!(c.back.len(), 2);
        let a = nodes.lost_token("a");
        let c = nodes.update(vec![
            node("a", NodeState::DOWN),
            node("b", NodeState::READY),
        ]);
        assert_eq!(
            c,
            Changes {
                lost: vec!["a".into()],
                back: vec![]
            }
        );
        assert!(a.is_cancelled() && nodes.is_lost("a") && !nodes.is_lost("b"));
        assert_eq!(nodes.name("a"), "host-a");
        let c = nodes.update(vec![
            node("a", NodeState::DOWN),
            node("b", NodeState::READY),
        ]);
        assert_eq!(c, Changes::default());
        let c = nodes.update(vec![node("a", NodeState::READY)]);
        assert_eq!(
            c,
            Changes {
                lost: vec!["b".into()],
                back: vec!["a".into()]
            }
        );
        assert!(
            !nodes.lost_token("a").is_cancelled(),
            "a new token once back"
        );
        assert_eq!(nodes.reachable().len(), 1);
    }
}

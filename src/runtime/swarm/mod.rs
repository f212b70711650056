//! [`Runtime`] on a Docker Swarm: each session's container is a service
//! with one task, placed by Swarm, and attached through the engine API of
//! the node that runs it. The id the session layer keeps is the service's.
//!
//! - `create` makes the service (`spec.rs`), whose task runs the gate
//!   before the image's entrypoint (`gate.rs`);
//! - `attach` waits until the task has a container (`tasks.rs`), then
//!   attaches on its node; the stream ends when the node is lost
//!   (`monitor.rs`, `nodes.rs`);
//! - `start` fixes and checks the sandbox on the node (`sandbox.rs`), then
//!   opens the gate;
//! - `state`, `kill` go to the node (`containers.rs`); `remove` kills there
//!   and removes the service on the manager;
//! - the image's entrypoint and `image_exists` ask the nodes (`images.rs`);
//!   `bento images build` loads images on them (`distribute.rs`).
//!
//! Every call to the manager or a node has a deadline (`call.rs`).
//! `docs/scale-out.md` says why each choice was made.

mod call;
mod containers;
mod distribute;
mod gate;
mod images;
mod monitor;
mod nodes;
mod sandbox;
mod spec;
mod tasks;

pub use distribute::{push, put_on_every_node, Copied, NodeCopy, COPY_DEADLINE};
pub use gate::GATE_FAILED;

use async_trait::async_trait;
use bollard::query_parameters::ListServicesOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::call::within;
use self::nodes::Nodes;
use self::spec::Expected;
use self::tasks::{NotPlaced, Placement};
use super::{
    ContainerIo, ContainerSpec, ContainerState, ListedContainer, Result, Runtime, RuntimeError,
};
use crate::config::SwarmConfig;

/// A service made by `create` and not yet started.
struct Fresh {
    expected: Expected,
    image: String,
    image_name: String,
    /// Its stdin, once attached: `start` opens the gate on it.
    gate: Option<gate::Shared>,
}

struct Inner {
    manager: Docker,
    cfg: SwarmConfig,
    nodes: Nodes,
    label_prefix: String,
    placements: Mutex<HashMap<String, Placement>>,
    tasks: tasks::TaskCache,
    fresh: Mutex<HashMap<String, Fresh>>,
    /// Services whose node was lost while they ran: what runs of them when
    /// the node is back is killed (their sessions have ended).
    lost: Mutex<HashSet<String>>,
    entrypoints: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one insert or remove: a poisoned map is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Swarm engine. Cheap to clone.
#[derive(Clone)]
pub struct SwarmRuntime {
    inner: Arc<Inner>,
}

impl SwarmRuntime {
    /// Connects to the manager, learns the nodes, and starts watching them
    /// (until the last clone is dropped). `label_prefix` is the controller's:
    /// the ghosts of its services are swept from nodes that come back.
    pub async fn connect(cfg: &SwarmConfig, label_prefix: &str) -> Result<SwarmRuntime> {
        let tls = cfg.tls();
        let manager = call::connect(&cfg.manager, tls.as_ref(), cfg.call_timeout).await?;
        let inner = Arc::new(Inner {
            manager,
            cfg: cfg.clone(),
            nodes: Nodes::new(tls, cfg.node_port, cfg.call_timeout),
            label_prefix: label_prefix.to_string(),
            placements: Mutex::new(HashMap::new()),
            tasks: tasks::TaskCache::default(),
            fresh: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
            entrypoints: Mutex::new(HashMap::new()),
        });
        monitor::poll(&inner)
            .await
            .map_err(|e| RuntimeError::Engine(format!("Swarm manager {}: {e}", cfg.manager)))?;
        tokio::spawn(monitor::run(Arc::downgrade(&inner)));
        Ok(SwarmRuntime { inner })
    }

    /// The nodes the manager reports, as (hostname, lost), sorted.
    pub fn nodes(&self) -> Vec<(String, bool)> {
        let mut all: Vec<_> = self
            .inner
            .nodes
            .all()
            .into_iter()
            .map(|n| (n.name, n.lost))
            .collect();
        all.sort();
        all
    }

    /// The node a session's task runs on (its hostname), if it has one.
    pub async fn node_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .inner
            .placement(id)
            .await?
            .map(|p| self.inner.nodes.name(&p.node)))
    }
}

impl Inner {
    fn deadline(&self) -> Duration {
        self.cfg.call_timeout
    }

    /// Where the task of service `id` runs, if it has a container yet.
    async fn placement(&self, id: &str) -> Result<Option<Placement>> {
        if let Some(p) = locked(&self.placements).get(id) {
            return Ok(Some(p.clone()));
        }
        match tasks::task(&self.manager, id, self.deadline()).await {
            Ok(t) => {
                let p = t.and_then(|t| t.placement);
                if let Some(p) = &p {
                    locked(&self.placements).insert(id.to_string(), p.clone());
                }
                Ok(p)
            }
            Err(e) if e.is_not_found() => Err(RuntimeError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the task of a new service has its container.
    async fn placed(&self, id: &str) -> Result<Placement> {
        if let Some(p) = locked(&self.placements).get(id) {
            return Ok(p.clone());
        }
        let waited = tasks::wait_placed(
            &self.manager,
            &self.tasks,
            id,
            self.cfg.start_timeout,
            self.deadline(),
        )
        .await;
        let p = match waited {
            Ok(p) => p,
            Err(NotPlaced::Ended(t)) => {
                let image = locked(&self.fresh)
                    .get(id)
                    .map(|f| (f.image.clone(), f.image_name.clone()));
                return Err(match image {
                    Some((tag, name)) if t.why.contains("No such image") => {
                        RuntimeError::ImageMissing(tag, name)
                    }
                    _ => RuntimeError::Engine(format!("Swarm could not start it: {}", t.why)),
                });
            }
            Err(NotPlaced::TimedOut { after, last }) => {
                let why = last.map(|t| t.why).filter(|w| !w.is_empty());
                return Err(RuntimeError::Engine(format!(
                    "no node started it within {}s{}",
                    after.as_secs_f64(),
                    why.map(|w| format!(": {w}")).unwrap_or_default()
                )));
            }
            Err(NotPlaced::Call(e)) => return Err(e.into()),
        };
        locked(&self.placements).insert(id.to_string(), p.clone());
        Ok(p)
    }

    async fn delete_service(&self, id: &str) -> Result<()> {
        match within(
            self.deadline(),
            "manager: remove service",
            self.manager.delete_service(id),
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let inner = &self.inner;
        let expected = Expected::of(spec).map_err(RuntimeError::Engine)?;
        let entrypoint = inner.entrypoint(spec).await?;
        let service = spec::service(spec, &expected, &entrypoint);
        let created = within(
            inner.deadline(),
            "manager: create service",
            inner.manager.create_service(service, None),
        )
        .await?;
        let id = created.id.ok_or_else(|| {
            RuntimeError::Engine("the manager made a service without an id".into())
        })?;
        let fresh = Fresh {
            expected,
            image: spec.image.clone(),
            image_name: spec.image_name.clone(),
            gate: None,
        };
        locked(&inner.fresh).insert(id.clone(), fresh);
        Ok(id)
    }

    async fn attach(&self, id: &str) -> Result<ContainerIo> {
        let inner = &self.inner;
        let p = inner.placed(id).await?;
        let node = inner.nodes.client(&p.node).await?;
        let name = inner.nodes.name(&p.node);
        let lost = inner.nodes.lost_token(&p.node);
        let io = tokio::time::timeout(
            inner.deadline(),
            super::docker::attach_bollard(&node, &p.container),
        )
        .await
        .map_err(|_| {
            RuntimeError::Engine(format!(
                "node {name}: attach: no answer within {}s",
                inner.deadline().as_secs_f64()
            ))
        })??;
        // A lost node's stream may never end by itself (a cut link).
        let output = io.output.take_until(lost.cancelled_owned()).boxed();
        let input = match locked(&inner.fresh).get_mut(id) {
            Some(fresh) => {
                let shared = gate::Shared::new(io.input);
                fresh.gate = Some(shared.clone());
                Box::pin(shared.gated())
            }
            None => io.input,
        };
        Ok(ContainerIo { output, input })
    }

    async fn start(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        let Some(fresh) = locked(&inner.fresh).remove(id) else {
            // Started before (the gate opens once).
            return Ok(());
        };
        let Some(gate) = fresh.gate else {
            return Err(RuntimeError::Engine(
                "start before attach: the gate opens on the attach stream".into(),
            ));
        };
        let p = inner.placed(id).await?;
        let node = inner.nodes.client(&p.node).await?;
        let name = inner.nodes.name(&p.node);
        sandbox::prepare(
            &node,
            &name,
            &p.container,
            &fresh.expected,
            inner.deadline(),
        )
        .await?;
        tokio::time::timeout(inner.deadline(), gate.open())
            .await
            .map_err(|_| RuntimeError::Engine(format!("node {name}: opening the gate timed out")))?
            .map_err(|e| RuntimeError::Engine(format!("node {name}: cannot open the gate: {e}")))
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        self.inner.state(id).await
    }

    async fn kill(&self, id: &str) -> Result<()> {
        self.inner.kill(id).await
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        self.inner.signal(id, signal).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let inner = &self.inner;
        // The task's stop signal is one the driver ignores: kill it first.
        if let Err(e) = inner.kill(id).await {
            tracing::warn!(service = %id, error = %e, "cannot kill a session's container; removing its service");
        }
        inner.delete_service(id).await?;
        locked(&inner.placements).remove(id);
        locked(&inner.fresh).remove(id);
        // (Its ghost, if any, has no service now: the sweep kills it.)
        locked(&inner.lost).remove(id);
        Ok(())
    }

    async fn list(&self, label: &str) -> Result<Vec<ListedContainer>> {
        let inner = &self.inner;
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let opts = ListServicesOptionsBuilder::new().filters(&filters).build();
        let services = within(
            inner.deadline(),
            "manager: list services",
            inner.manager.list_services(Some(opts)),
        )
        .await?;
        let tasks = if services.is_empty() {
            HashMap::new()
        } else {
            tasks::all(&inner.manager, inner.deadline()).await?
        };
        Ok(services
            .into_iter()
            .filter_map(|s| {
                let id = s.id?;
                let running = tasks.get(&id).is_none_or(|t| !t.ended());
                Some(ListedContainer {
                    running,
                    labels: s.spec.and_then(|s| s.labels).unwrap_or_default(),
                    id,
                })
            })
            .collect())
    }

    /// Whether every node that can take tasks has the image.
    async fn image_exists(&self, image: &str) -> Result<bool> {
        self.inner.image_on_every_node(image).await
    }

    async fn usage(&self, id: &str) -> Result<Option<crate::runtime::UsageSample>> {
        self.inner.usage(id).await
    }
}

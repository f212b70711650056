//! Putting an image on every node of a Swarm without a registry: the
//! image is exported from the engine that built it (`docker save`) and
//! streamed into each node that lacks it (`docker load`), a few nodes at a
//! time. A node that already has the same image (the same id) is left
//! alone, so running `bento images build` again after adding a node loads
//! the image on the new node only.
//!
//! This is what `bento images build` does with `engine: swarm`. It needs
//! no controller: it asks the manager for the nodes and reaches each
//! node's engine as the controller does (`swarm:` in `bento.yaml`).
//!
//! With `swarm.registry` it pushes instead ([`push`]), and each node pulls
//! an image when it first runs it ([`pull`]).

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ImportImageOptionsBuilder, PushImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::{stream, StreamExt};
use std::fmt;
use std::time::{Duration, Instant};

use super::call::{self, within};
use super::nodes::{Node, Nodes};
use crate::config::SwarmConfig;
use crate::runtime::{Result, RuntimeError};

/// How long one node may take to receive and load an image. An image of a
/// few hundred MB loads in seconds on a LAN; this bounds a node that
/// accepts the stream and then stops reading.
pub const COPY_DEADLINE: Duration = Duration::from_secs(600);

/// Nodes loaded at once: each copy is an export from the building engine,
/// so more at once would only contend for its disk.
const AT_ONCE: usize = 3;

/// What happened on one node.
#[derive(Debug, Clone, PartialEq)]
pub enum Copied {
    /// The node had the image already (the same id).
    AlreadyThere,
    /// The image was loaded: its size on the wire and the time it took.
    Loaded { bytes: u64, took: Duration },
    /// The node is down or drained-and-unreachable: nothing was tried.
    Skipped(String),
    /// Loading failed; the node does not have the image.
    Failed(String),
}

/// One node's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCopy {
    /// The node's hostname, as the Swarm names it.
    pub node: String,
    pub copied: Copied,
}

impl fmt::Display for NodeCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.copied {
            Copied::AlreadyThere => write!(f, "{}: has it already", self.node),
            Copied::Loaded { bytes, took } => write!(
                f,
                "{}: loaded ({:.1} MB in {:.1}s)",
                self.node,
                *bytes as f64 / 1e6,
                took.as_secs_f64()
            ),
            Copied::Skipped(why) => write!(f, "{}: skipped: {why}", self.node),
            Copied::Failed(why) => write!(f, "{}: failed: {why}", self.node),
        }
    }
}

/// Puts `tag`, which `source` has, on every node of the Swarm that `cfg`
/// reaches: one outcome per node the manager knows, sorted by hostname.
/// Fails only when the manager or the image in `source` cannot be read;
/// a node that fails is reported in its outcome.
pub async fn put_on_every_node(
    cfg: &SwarmConfig,
    source: &Docker,
    tag: &str,
) -> Result<Vec<NodeCopy>> {
    let deadline = cfg.call_timeout;
    let image = within(deadline, "inspect image", source.inspect_image(tag))
        .await
        .map_err(|e| RuntimeError::Engine(format!("the image {tag} to copy: {e}")))?;
    let id = image.id.unwrap_or_default();
    let tls = cfg.tls();
    let manager = call::connect(&cfg.manager, tls.as_ref(), deadline).await?;
    let list = within(deadline, "manager: list nodes", manager.list_nodes(None))
        .await
        .map_err(|e| RuntimeError::Engine(format!("Swarm manager {}: {e}", cfg.manager)))?;
    let nodes = Nodes::new(tls, cfg.node_port, deadline);
    nodes.update(list);
    let mut all = nodes.all();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let nodes = &nodes;
    let id = id.as_str();
    let mut out: Vec<NodeCopy> = stream::iter(all)
        .map(|node| async move {
            let copied = copy_to(nodes, &node, source, tag, id, deadline).await;
            NodeCopy {
                node: node.name,
                copied,
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}

async fn copy_to(
    nodes: &Nodes,
    node: &Node,
    source: &Docker,
    tag: &str,
    id: &str,
    deadline: Duration,
) -> Copied {
    if node.lost {
        return Copied::Skipped(
            "the node is down: run `bento images build` again once it is back".into(),
        );
    }
    let docker = match nodes.client(&node.id).await {
        Ok(d) => d,
        Err(e) => return Copied::Failed(e.to_string()),
    };
    match within(deadline, "inspect image", docker.inspect_image(tag)).await {
        Ok(there) if there.id.as_deref() == Some(id) => return Copied::AlreadyThere,
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Copied::Failed(e.to_string()),
    }
    let started = Instant::now();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let tar = source.export_image(tag).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        chunk
    });
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    let load = async {
        let mut answers = docker.import_image_stream(options, tar, None);
        while let Some(answer) = answers.next().await {
            let info = answer?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_else(|| "unknown error".into());
                return Ok(Err(message));
            }
        }
        Ok(Ok(()))
    };
    match within(COPY_DEADLINE, "load image", load).await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Copied::Failed(message),
        Err(e) => return Copied::Failed(e.to_string()),
    }
    // The load says nothing of what it loaded: check the node has it now.
    match within(deadline, "inspect image", docker.inspect_image(tag)).await {
        Ok(there) if there.id.as_deref() == Some(id) => Copied::Loaded {
            bytes: sent.load(std::sync::atomic::Ordering::Relaxed),
            took: started.elapsed(),
        },
        Ok(there) => Copied::Failed(format!(
            "loaded, but the node's {tag} is {} and not {id}",
            there.id.unwrap_or_default()
        )),
        Err(e) => Copied::Failed(format!("loaded, but {e}")),
    }
}

/// `repo:tag` split at the tag (a registry's port is not a tag).
fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// The daemon's own words for a failed stream item.
fn stream_error(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

/// Pushes `image` (named in the registry) from `source` to its registry,
/// within [`COPY_DEADLINE`]. The registry must take pushes without
/// credentials (a private network, or a registry proxy that authenticates).
pub async fn push(source: &Docker, image: &str) -> Result<Duration> {
    let started = Instant::now();
    let (repo, tag) = split_tag(image);
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    let pushing = async {
        let mut answers = source.push_image(repo, Some(options), None);
        while let Some(answer) = answers.next().await {
            let info = answer.map_err(stream_error)?;
            if let Some(detail) = info.error_detail {
                return Err(detail.message.unwrap_or_else(|| "unknown error".into()));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(COPY_DEADLINE, pushing).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(why)) => Err(RuntimeError::Engine(format!("pushing {image}: {why}"))),
        Err(_) => Err(RuntimeError::Engine(format!(
            "pushing {image}: not done within {}s",
            COPY_DEADLINE.as_secs()
        ))),
    }
}

/// Pulls `image` from its registry on a node, within `deadline`.
pub(super) async fn pull(node: &Docker, name: &str, image: &str, deadline: Duration) -> Result<()> {
    let (repo, tag) = split_tag(image);
    let options = CreateImageOptionsBuilder::new()
        .from_image(repo)
        .tag(tag)
        .build();
    let pulling = async {
        let mut answers = node.create_image(Some(options), None, None);
        while let Some(answer) = answers.next().await {
            let info = answer.map_err(stream_error)?;
            if let Some(detail) = info.error_detail {
                return Err(detail.message.unwrap_or_else(|| "unknown error".into()));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, pulling).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(RuntimeError::Engine(format!(
            "node {name}: pulling {image}: {why}"
        ))),
        Err(_) => Err(RuntimeError::Engine(format!(
            "node {name}: pulling {image}: not done within {}s",
            deadline.as_secs_f64()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn a_registry_port_is_not_a_tag() {
        assert_eq!(split_tag("bento/python:latest"), ("bento/python", "latest"));
        assert_eq!(
            split_tag("10.0.0.1:5000/bento/python:latest"),
            ("10.0.0.1:5000/bento/python", "latest")
        );
        assert_eq!(
            split_tag("10.0.0.1:5000/bento/python"),
            ("10.0.0.1:5000/bento/python", "latest")
        );
    }
}

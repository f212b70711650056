//! Images on the nodes: an image's entrypoint (the gate runs it), and
//! whether every node has an image. There is no registry: images reach
//! the nodes by `docker save` / `docker load`.

use std::time::{Duration, Instant};

use super::call::within;
use super::{locked, Inner};
use crate::runtime::{ContainerSpec, Result, RuntimeError};

/// How long an image's entrypoint, read from a node, is trusted.
const ENTRYPOINT_TTL: Duration = Duration::from_secs(60);

impl Inner {
    /// The image's entrypoint and command, read on a node that has it.
    pub(super) async fn entrypoint(&self, spec: &ContainerSpec) -> Result<Vec<String>> {
        if let Some((at, e)) = locked(&self.entrypoints).get(&spec.image) {
            if at.elapsed() < ENTRYPOINT_TTL {
                return Ok(e.clone());
            }
        }
        let mut nodes = self.nodes.reachable();
        nodes.sort_by_key(|n| !n.schedulable);
        let mut last_error = None;
        for node in nodes {
            let docker = match self.nodes.client(&node.id).await {
                Ok(d) => d,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let what = format!("node {}: inspect image", node.name);
            match within(self.deadline(), what, docker.inspect_image(&spec.image)).await {
                Ok(image) => {
                    let config = image.config.unwrap_or_default();
                    let mut entry = config.entrypoint.unwrap_or_default();
                    entry.extend(config.cmd.unwrap_or_default());
                    if entry.is_empty() {
                        return Err(RuntimeError::Engine(format!(
                            "image {} has no entrypoint or command",
                            spec.image
                        )));
                    }
                    locked(&self.entrypoints)
                        .insert(spec.image.clone(), (Instant::now(), entry.clone()));
                    return Ok(entry);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => last_error = Some(e.into()),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RuntimeError::ImageMissing(spec.image.clone(), spec.image_name.clone())
        }))
    }

    /// Whether every node that can take tasks has the image.
    pub(super) async fn image_on_every_node(&self, image: &str) -> Result<bool> {
        let inner = self;
        let nodes: Vec<_> = inner
            .nodes
            .reachable()
            .into_iter()
            .filter(|n| n.schedulable)
            .collect();
        if nodes.is_empty() {
            return Err(RuntimeError::Engine(
                "no node of the Swarm can take tasks".into(),
            ));
        }
        for n in nodes {
            let docker = inner.nodes.client(&n.id).await?;
            let what = format!("node {}: inspect image", n.name);
            match within(inner.deadline(), what, docker.inspect_image(image)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

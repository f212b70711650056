//! Images on the nodes: an image's entrypoint (the gate runs it), and
//! whether the nodes can run an image. Without a registry, images reach
//! the nodes by `docker save` / `docker load` (`distribute.rs`), and every
//! node that takes tasks must have it; with `swarm.registry`, nodes pull
//! it, and the registry must have it.

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
        match self.read_entrypoint(spec).await {
            Err(RuntimeError::ImageMissing(..)) if self.cfg.registry.is_some() => {
                // No node has pulled it yet: one does now, as a task would.
                let node = self
                    .nodes
                    .reachable()
                    .into_iter()
                    .find(|n| n.schedulable)
                    .ok_or_else(|| {
                        RuntimeError::Engine("no node of the Swarm can take tasks".into())
                    })?;
                let docker = self.nodes.client(&node.id).await?;
                super::distribute::pull(&docker, &node.name, &spec.image, self.cfg.start_timeout)
                    .await?;
                self.read_entrypoint(spec).await
            }
            read => read,
        }
    }

    async fn read_entrypoint(&self, spec: &ContainerSpec) -> Result<Vec<String>> {
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

    /// Whether the nodes can run the image: the registry has it (with
    /// `swarm.registry`), else every node that can take tasks has it.
    pub(super) async fn image_on_every_node(&self, image: &str) -> Result<bool> {
        if self.cfg.registry.is_some() {
            let what = format!("manager: {image} in the registry");
            return match within(
                self.deadline(),
                what,
                self.manager.inspect_registry_image(image, None),
            )
            .await
            {
                Ok(_) => Ok(true),
                // The engine answers an unknown manifest with 401, 403 or
                // 404, depending on the registry.
                Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
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

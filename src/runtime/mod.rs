//! The container engine behind a small trait, so the session logic never sees
//! Docker types and can be unit-tested against a fake.

mod cgroup;
pub mod docker;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod images;
mod stdio;
pub mod swarm;
pub mod usage;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::collections::HashMap;
use std::pin::Pin;
use tokio::io::AsyncWrite;

use crate::config::{ImageSpec, Sandbox};
use crate::wire::api::Limits;

pub use docker::DockerRuntime;
pub use swarm::SwarmRuntime;
pub use usage::{PeakSource, UsageSample};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {0} is not built: run `bento images build {1}`")]
    ImageMissing(String, String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container engine: {0}")]
    Engine(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Everything needed to create one session's container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name (unique per session).
    pub name: String,
    /// Image tag, e.g. `bento/python:latest`.
    pub image: String,
    /// Image name as the user knows it, for error messages.
    pub image_name: String,
    pub labels: HashMap<String, String>,
    pub limits: Limits,
    pub sandbox: Sandbox,
    /// Where a cluster engine may place it (Swarm constraints, from the
    /// image's YAML); an engine of one host ignores it.
    pub placement: Vec<String>,
}

impl ContainerSpec {
    /// A container of `image` with its sandbox: the one place cold session
    /// containers and warm ones are described, so they cannot drift apart.
    pub fn for_image(
        image: &ImageSpec,
        name: String,
        labels: HashMap<String, String>,
        limits: Limits,
    ) -> ContainerSpec {
        ContainerSpec {
            name,
            image: image.tag(),
            image_name: image.name.clone(),
            labels,
            limits,
            sandbox: image.sandbox.clone(),
            placement: image.placement.clone(),
        }
    }
}

/// A chunk of what the container wrote, as the engine delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    /// The driver's frame stream.
    Stdout(Bytes),
    /// Raw bytes written to fd 2.
    Stderr(Bytes),
}

/// The container's stdio: a stream of output chunks and a writer for stdin.
pub struct ContainerIo {
    pub output: BoxStream<'static, Result<OutputChunk>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// How a container ended, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub code: i64,
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, or running.
    Running,
    Exited(ContainerExit),
    /// The engine does not know it (removed behind our back).
    Missing,
    /// The machine that ran it is gone (a cluster engine's node is down):
    /// it may still run there, but nothing reaches it any more.
    NodeLost {
        node: String,
    },
}

/// A container that carries Bento's labels.
#[derive(Debug, Clone)]
pub struct ListedContainer {
    pub id: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Creates (does not start) a container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;
    /// Attaches to stdin, stdout and stderr. Call before [`Runtime::start`]
    /// so that no output of a fast function is lost (moby issue 29285).
    async fn attach(&self, id: &str) -> Result<ContainerIo>;
    async fn start(&self, id: &str) -> Result<()>;
    async fn state(&self, id: &str) -> Result<ContainerState>;
    /// Kills the container at once (SIGKILL). Killing an ended one is not an error.
    async fn kill(&self, id: &str) -> Result<()>;
    /// Sends the container's main process a signal by name (`SIGTERM`), as
    /// a warning: the function may catch it. Signalling an ended container
    /// is not an error.
    async fn signal(&self, id: &str, signal: &str) -> Result<()>;
    /// Removes the container, killing it if needed. Removing a missing one is not an error.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Containers that carry `label` (any value), running or not.
    async fn list(&self, label: &str) -> Result<Vec<ListedContainer>>;
    async fn image_exists(&self, image: &str) -> Result<bool>;
    /// One sample of the running container's resource usage, from the
    /// engine (see [`usage`]). `None` when it is not running.
    async fn usage(&self, id: &str) -> Result<Option<UsageSample>>;
}

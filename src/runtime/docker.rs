//! [`Runtime`] on the Docker Engine API, through bollard; on a Unix socket,
//! attach goes through `runtime::attach` instead (see there for why).

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    ContainerExit, ContainerIo, ContainerSpec, ContainerState, ListedContainer, OutputChunk,
    Result, Runtime, RuntimeError,
};

/// Where bollard looks when neither the config nor `DOCKER_HOST` says.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The engine's Unix socket, when it is reached through one: attach
    /// then goes through [`super::attach`] instead of bollard.
    socket: Option<PathBuf>,
}

impl DockerRuntime {
    /// Connects to `host` (or `DOCKER_HOST`, or the local socket) and
    /// negotiates the API version, since the engine may be older than the
    /// version bollard speaks by default.
    pub async fn connect(host: Option<&str>) -> Result<DockerRuntime> {
        // bollard's own choice, spelled out so that attach knows the socket.
        let host = match host {
            Some(h) => h.to_string(),
            None => std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string()),
        };
        let docker = Docker::connect_with_host(&host).map_err(engine)?;
        let socket = super::stdio::unix_socket_path(&host).map(PathBuf::from);
        // Attach and wait requests stay open for as long as a function runs;
        // the per-request timeout must not cut them.
        let docker = docker
            .with_timeout(Duration::from_secs(365 * 24 * 3600))
            .negotiate_version()
            .await
            .map_err(engine)?;
        Ok(DockerRuntime { docker, socket })
    }

    /// The Unix socket attach goes through, `None` when it goes through
    /// bollard.
    pub fn attach_socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    /// Attach through bollard even on a Unix socket, as for engines reached
    /// over TCP; for tests that compare the two paths.
    pub fn with_bollard_attach(mut self) -> DockerRuntime {
        self.socket = None;
        self
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(engine)
    }
}

pub(crate) fn engine(e: DockerError) -> RuntimeError {
    crate::metrics::add(&crate::metrics::METRICS.docker_errors, 1);
    RuntimeError::Engine(e.to_string())
}

pub(crate) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `cpus` as the engine's `NanoCpus`. Limits are checked against
/// [`crate::config::MIN_CPUS`] where they enter (the image's YAML, a run's
/// request); should a smaller value still get here, it becomes the minimum,
/// never 0, which the engine reads as "no limit".
pub(crate) fn nano_cpus(cpus: f64) -> i64 {
    let min = (crate::config::MIN_CPUS * 1e9) as i64;
    // `as` saturates, and NaN becomes 0, which `max` lifts to the minimum.
    ((cpus * 1e9).round() as i64).max(min)
}

/// The hardened host settings: see `docs/security.md` for each one.
fn host_config(spec: &ContainerSpec) -> HostConfig {
    let l = &spec.limits;
    let sb = &spec.sandbox;
    let memory = i64::try_from(l.memory).unwrap_or(i64::MAX);
    HostConfig {
        network_mode: Some(sb.network.clone()),
        readonly_rootfs: Some(sb.read_only_root),
        // The only writable place; noexec keeps dropped binaries from running.
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,noexec,size={}", sb.tmp_size),
        )])),
        // The engine mounts /dev/shm in every container (nosuid, nodev,
        // noexec); its size is the image's, checked at config load.
        shm_size: crate::config::size_bytes(&sb.shm_size).and_then(|b| i64::try_from(b).ok()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        memory: Some(memory),
        // Equal to memory: no swap beyond the limit.
        memory_swap: Some(memory),
        nano_cpus: Some(nano_cpus(l.cpus)),
        pids_limit: Some(l.pids),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(sb.nofile),
            hard: Some(sb.nofile),
        }]),
        // The controller reads output through the attach stream and keeps
        // its own spool; Docker's json-file driver would only slow it down.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ..Default::default()
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(spec.sandbox.user.clone()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            // Keep stdin open across attaches, so a controller restart can
            // attach again; end of input is a frame, not a closed pipe.
            stdin_once: Some(false),
            tty: Some(false),
            network_disabled: Some(spec.sandbox.network == "none"),
            host_config: Some(host_config(spec)),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(e) if is_not_found(&e) => Err(RuntimeError::ImageMissing(
                spec.image.clone(),
                spec.image_name.clone(),
            )),
            Err(e) => Err(engine(e)),
        }
    }

    async fn attach(&self, id: &str) -> Result<ContainerIo> {
        if let Some(socket) = &self.socket {
            let result = super::stdio::attach(socket, id).await;
            if let Err(RuntimeError::Engine(_)) = &result {
                crate::metrics::add(&crate::metrics::METRICS.docker_errors, 1);
            }
            return result;
        }
        attach_bollard(&self.docker, id).await
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(engine)
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        let info = match self.docker.inspect_container(id, None).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(ContainerState::Missing),
            Err(e) => return Err(engine(e)),
        };
        let state = info.state.unwrap_or_default();
        use bollard::models::ContainerStateStatusEnum as S;
        let ended = matches!(state.status, Some(S::EXITED) | Some(S::DEAD));
        if !ended {
            return Ok(ContainerState::Running);
        }
        Ok(ContainerState::Exited(ContainerExit {
            code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed.unwrap_or(false),
        }))
    }

    async fn kill(&self, id: &str) -> Result<()> {
        self.signal(id, "SIGKILL").await
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let opts = KillContainerOptionsBuilder::new().signal(signal).build();
        match self.docker.kill_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // 404: gone; 409: not running. Either way it is not running now.
            Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn list(&self, label: &str) -> Result<Vec<ListedContainer>> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                use bollard::models::ContainerSummaryStateEnum as S;
                Some(ListedContainer {
                    running: matches!(c.state, Some(S::RUNNING) | Some(S::CREATED)),
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    async fn usage(&self, id: &str) -> Result<Option<super::UsageSample>> {
        // A local engine's containers are in this host's cgroup fs, if it
        // is visible here: exact and immediate (see `runtime::cgroup`).
        if self.socket.is_some() {
            if let Some(s) = super::cgroup::sample(id) {
                return Ok(Some(s));
            }
        }
        super::usage::sample(&self.docker, id).await
    }
}

/// Attaches through bollard's HTTP upgrade: for engines reached over TCP
/// (and, in the Swarm engine, every node).
pub(crate) async fn attach_bollard(docker: &Docker, id: &str) -> Result<ContainerIo> {
    let opts = AttachContainerOptionsBuilder::new()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let io = docker
        .attach_container(id, Some(opts))
        .await
        .map_err(engine)?;
    let output = io
        .output
        .filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(OutputChunk::Stdout(message))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk::Stderr(message))),
                // Without a TTY the engine multiplexes only stdout and stderr.
                Ok(LogOutput::Console { message }) => Some(Ok(OutputChunk::Stdout(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(engine(e))),
            }
        })
        .boxed();
    Ok(ContainerIo {
        output,
        input: io.input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cpus_is_never_zero() {
        assert_eq!(nano_cpus(0.5), 500_000_000);
        assert_eq!(nano_cpus(0.01), 10_000_000);
        // Should an unchecked value slip through, it still limits.
        for tiny in [0.0, 1e-300, -1.0, f64::NAN] {
            assert_eq!(nano_cpus(tiny), 10_000_000, "{tiny}");
        }
    }
}

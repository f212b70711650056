//! The real engine: the function image, containers by label, and removing
//! the containers a test or a measurement left behind.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bento::runtime::{DockerRuntime, ListedContainer, Runtime};
use tokio::sync::OnceCell;

use super::{repo, repo_config, Ctx, Res};

/// The offline base image made by `images/base/bootstrap.sh`.
pub const OFFLINE_BASE: &str = "bento/base:bookworm";

/// Builds the python function image (Docker's cache makes it quick when
/// nothing changed), bootstrapping the offline base image first if no base
/// is available.
pub async fn build_image() -> Res<()> {
    let mut config = repo_config();
    let docker = bento::runtime::images::connect(&config)
        .await
        .ctx("docker")?;
    let spec = config
        .images
        .get("python")
        .cloned()
        .ok_or("no python image in config/images")?;
    if std::env::var(bento::config::BASE_IMAGE_ENV).is_err() {
        let has = |t: String| {
            let d = docker.clone();
            async move {
                bento::runtime::images::image_exists(&d, &t)
                    .await
                    .unwrap_or(false)
            }
        };
        if !has(spec.base.clone()).await {
            if !has(OFFLINE_BASE.to_string()).await {
                let status = Command::new(repo().join("images/base/bootstrap.sh")).status();
                if !matches!(status, Ok(s) if s.success()) {
                    return Err(format!("images/base/bootstrap.sh failed: {status:?}"));
                }
            }
            config.base_image = Some(OFFLINE_BASE.into());
        }
    }
    bento::runtime::images::build_image(&docker, &config, &spec, |_| {})
        .await
        .ctx("building the python image")
}

static IMAGE: OnceCell<()> = OnceCell::const_new();

/// [`build_image`] once per test binary, or a test failure.
pub async fn ensure_image() {
    IMAGE
        .get_or_init(|| async {
            if let Err(e) = build_image().await {
                panic!("{e}");
            }
        })
        .await;
}

/// Containers carrying this label (`key` or `key=value`), running or not.
pub async fn labelled(label: &str) -> Vec<ListedContainer> {
    let rt = DockerRuntime::connect(None)
        .await
        .unwrap_or_else(|e| panic!("docker: {e}"));
    rt.list(label)
        .await
        .unwrap_or_else(|e| panic!("docker list: {e}"))
}

/// Containers carrying this session's label, running or not.
pub async fn containers_of(label_prefix: &str, session_id: &str) -> usize {
    labelled(&format!("{label_prefix}.session={session_id}"))
        .await
        .len()
}

/// Warm containers (idle or taken) under `label_prefix`, running or not.
pub async fn pool_containers(label_prefix: &str) -> Vec<ListedContainer> {
    labelled(&format!("{label_prefix}.pool")).await
}

/// Waits until the controller at `url` has `idle` warm python containers
/// ready and the engine runs `running` warm containers (idle or taken)
/// under `label_prefix`; returns the running ones' ids.
pub async fn wait_pool(
    url: &str,
    label_prefix: &str,
    idle: u64,
    running: usize,
) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now: HashSet<String> = pool_containers(label_prefix)
            .await
            .into_iter()
            .filter(|c| c.running)
            .map(|c| c.id)
            .collect();
        if now.len() == running && super::pool_ready(url).await == idle {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "pool never reached {idle} idle / {running} running (now {} running)",
            now.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kinds of container a controller labels `PREFIX.KIND`.
pub const KINDS: [&str; 3] = ["session", "pool", "check"];

/// `docker rm -f` of every container a controller under `label_prefix`
/// made (sessions, warm pool, syntax checks). Through the `docker` CLI and
/// blocking, so that it can run in `Drop`. Says what it removed on stderr.
pub fn remove_prefixed(label_prefix: &str) {
    for kind in KINDS {
        remove_containers(&format!("{label_prefix}.{kind}"));
    }
}

/// `docker rm -f` of every container carrying `label`.
pub fn remove_containers(label: &str) {
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output();
    let ids: Vec<String> = match ids {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(String::from)
            .collect(),
        Err(e) => {
            eprintln!("cleanup: docker ps: {e}");
            return;
        }
    };
    if ids.is_empty() {
        return;
    }
    eprintln!(
        "cleanup: removing {} container(s) labelled {label}",
        ids.len()
    );
    for batch in ids.chunks(50) {
        let status = Command::new("docker")
            .args(["rm", "-f"])
            .args(batch)
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("cleanup: docker rm -f failed: {status:?}");
        }
    }
}

//! A controller in this process (`bento::controller::run`) on 127.0.0.1:0,
//! with a temporary data dir and a label prefix of its own, driven through
//! the real client: against the real Docker engine, or on the fake runtime
//! for the checks that need no container.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bento::client::{Attachment, Client};
use bento::config::Config;
use bento::runtime::fake::FakeRuntime;
use bento::runtime::{DockerRuntime, ListedContainer, Runtime};
use bento::wire::api::SessionInfo;
use tokio_util::sync::CancellationToken;

use super::client;

pub struct TestServer {
    pub url: String,
    pub client: Client,
    pub data_dir: PathBuf,
    pub label_prefix: String,
    /// The runtime of a server started with [`TestServer::start_fake`];
    /// `None` for one on the real engine.
    pub fake: Option<FakeRuntime>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A controller on the real engine, with the repository's config.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// [`TestServer::start`], with the config changed by `tweak` first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        super::ensure_image().await;
        Self::launch(tweak, None).await
    }

    /// A controller on the fake runtime with its idle driver
    /// ([`FakeRuntime::with_idle_driver`]): no Docker needed. Every code
    /// submitted compiles; every session runs, writes nothing and ends only
    /// when killed. For the API's checks that need no function to run.
    pub async fn start_fake(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::launch(tweak, Some(FakeRuntime::with_idle_driver())).await
    }

    async fn launch(tweak: impl FnOnce(&mut Config), fake: Option<FakeRuntime>) -> TestServer {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut config = super::repo_config();
        config.data_dir = dir.path().join("data");
        // Each controller owns the containers under its own label prefix:
        // test servers running side by side must not reconcile away each
        // other's containers.
        config.label_prefix = super::unique_prefix("test");
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let url = format!("http://{addr}");
        let shutdown = CancellationToken::new();
        let data_dir = config.data_dir.clone();
        let label_prefix = config.label_prefix.clone();
        let task = match &fake {
            None => tokio::spawn(bento::controller::run(listener, config, shutdown.clone())),
            Some(fake) => {
                let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
                tokio::spawn(bento::controller::run_with_runtime(
                    listener,
                    config,
                    runtime,
                    shutdown.clone(),
                ))
            }
        };
        TestServer {
            client: client::client(&url),
            url,
            data_dir,
            label_prefix,
            fake,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Submits `code` and returns the function id.
    pub async fn submit(&self, code: &str) -> String {
        client::submit(&self.client, code).await
    }

    /// Creates a session of `function` with `args`; returns (token, id).
    pub async fn session(&self, function: &str, args: &[&str]) -> (String, String) {
        client::try_create(&self.client, function, args)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn attach(&self, token: &str, after: u64) -> Attachment {
        client::try_attach(&self.client, token, after)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits (polling, for at most a minute) until `pred` holds for the
    /// session.
    pub async fn wait_session(
        &self,
        token: &str,
        what: &str,
        pred: impl Fn(&SessionInfo) -> bool,
    ) -> SessionInfo {
        client::wait_session(&self.client, token, what, Duration::from_secs(60), pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The session's info now; a test failure if there is none.
    pub async fn info(&self, token: &str) -> SessionInfo {
        self.client
            .session(token)
            .await
            .unwrap_or_else(|e| panic!("session {}: {e}", &token[..token.len().min(12)]))
    }

    /// Waits until the session is reaped (its token unknown).
    pub async fn wait_reaped(&self, token: &str) {
        client::wait_reaped(&self.client, token, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Containers of this server's session `id`, running or not.
    pub async fn containers(&self, id: &str) -> usize {
        super::containers_of(&self.label_prefix, id).await
    }

    /// Runs the `bento` binary against this server.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        super::run_cli(&self.url, args, stdin)
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("server failed: {e}"),
                Err(e) => panic!("server task: {e}"),
            }
        }
    }

    /// Stops the server and removes the containers it leaves behind
    /// (sessions a test killed or abandoned without reading them out).
    pub async fn stop(mut self) {
        self.halt().await;
        if self.fake.is_some() {
            return;
        }
        let rt = DockerRuntime::connect(None)
            .await
            .unwrap_or_else(|e| panic!("docker: {e}"));
        for kind in super::docker::KINDS {
            let left = rt
                .list(&format!("{}.{kind}", self.label_prefix))
                .await
                .unwrap_or_else(|e| panic!("docker list: {e}"));
            for c in left {
                if let Err(e) = rt.remove(&c.id).await {
                    eprintln!("cannot remove test container {}: {e}", c.id);
                }
            }
        }
    }

    /// This server's warm containers (taken or idle), running or not.
    pub async fn pool_containers(&self) -> Vec<ListedContainer> {
        super::pool_containers(&self.label_prefix).await
    }

    /// See [`super::wait_pool`].
    pub async fn wait_pool(&self, idle: u64, running: usize) -> HashSet<String> {
        super::wait_pool(&self.url, &self.label_prefix, idle, running).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

//! Test harness: a real controller on 127.0.0.1:0 against the real Docker
//! engine, with a temporary data dir, driven through the real client.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bento::client::{AttachEnd, AttachOptions, Attachment, Client, Event};
use bento::config::Config;
use bento::runtime::{DockerRuntime, Runtime};
use bento::wire::api::{CreateSession, ExitInfo, Stream, SubmitFunction};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The offline base image made by `images/base/bootstrap.sh`.
pub const OFFLINE_BASE: &str = "bento/base:bookworm";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's config, with images resolved against the repo.
pub fn repo_config() -> Config {
    match Config::load(Some(&repo().join("config/bento.yaml"))) {
        Ok(c) => c,
        Err(e) => panic!("config/bento.yaml: {e}"),
    }
}

static IMAGE: OnceCell<()> = OnceCell::const_new();

/// Builds the python function image once per test binary (Docker's cache
/// makes it quick when nothing changed), bootstrapping the offline base
/// image first if no base is available.
pub async fn ensure_image() {
    IMAGE
        .get_or_init(|| async {
            let mut config = repo_config();
            let docker = match bento::runtime::images::connect(&config).await {
                Ok(d) => d,
                Err(e) => panic!("docker: {e}"),
            };
            let spec = match config.images.get("python") {
                Some(s) => s.clone(),
                None => panic!("no python image in config/images"),
            };
            if std::env::var(bento::config::BASE_IMAGE_ENV).is_err() {
                let has = |t: &str| {
                    let d = docker.clone();
                    let t = t.to_string();
                    async move {
                        bento::runtime::images::image_exists(&d, &t)
                            .await
                            .unwrap_or(false)
                    }
                };
                if !has(&spec.base).await {
                    if !has(OFFLINE_BASE).await {
                        let status =
                            std::process::Command::new(repo().join("images/base/bootstrap.sh"))
                                .status();
                        assert!(
                            matches!(status, Ok(s) if s.success()),
                            "images/base/bootstrap.sh failed: {status:?}"
                        );
                    }
                    config.base_image = Some(OFFLINE_BASE.into());
                }
            }
            if let Err(e) =
                bento::runtime::images::build_image(&docker, &config, &spec, |_| {}).await
            {
                panic!("building the python image: {e}");
            }
        })
        .await;
}

pub struct TestServer {
    pub url: String,
    pub client: Client,
    pub data_dir: PathBuf,
    pub label_prefix: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        ensure_image().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut config = repo_config();
        config.data_dir = dir.path().join("data");
        // Each controller owns the containers under its own label prefix:
        // test servers running side by side must not reconcile away each
        // other's containers.
        config.label_prefix = format!(
            "test{}.bento",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
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
        let task = tokio::spawn(bento::controller::run(listener, config, shutdown.clone()));
        let client = Client::new(&url, None).unwrap_or_else(|e| panic!("client: {e}"));
        TestServer {
            url,
            client,
            data_dir,
            label_prefix,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Submits `code` and returns the function id.
    pub async fn submit(&self, code: &str) -> String {
        let body = SubmitFunction {
            code: code.into(),
            name: None,
            image: None,
            filename: None,
        };
        match self.client.submit_function(&body).await {
            Ok(f) => f.id,
            Err(e) => panic!("submit: {e}"),
        }
    }

    /// Creates a session of `function` with `args`; returns (token, id).
    pub async fn session(&self, function: &str, args: &[&str]) -> (String, String) {
        let body = CreateSession {
            function: function.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            transient: false,
            limits: Default::default(),
        };
        match self.client.create_session(&body).await {
            Ok(s) => (s.token, s.id),
            Err(e) => panic!("create session: {e}"),
        }
    }

    pub async fn attach(&self, token: &str, after: u64) -> Attachment {
        let opts = AttachOptions {
            after,
            ..AttachOptions::default()
        };
        match self.client.attach(token, opts).await {
            Ok(a) => a,
            Err(e) => panic!("attach: {e}"),
        }
    }

    /// Waits (polling, with a deadline) until `pred` holds for the session.
    pub async fn wait_session(
        &self,
        token: &str,
        what: &str,
        pred: impl Fn(&bento::wire::api::SessionInfo) -> bool,
    ) -> bento::wire::api::SessionInfo {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(info) = self.client.session(token).await {
                if pred(&info) {
                    return info;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The session's info now; a test failure if there is none.
    pub async fn info(&self, token: &str) -> bento::wire::api::SessionInfo {
        self.client
            .session(token)
            .await
            .unwrap_or_else(|e| panic!("session {}: {e}", &token[..token.len().min(12)]))
    }

    /// Waits until the session is reaped (its token unknown).
    pub async fn wait_reaped(&self, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.client.session(token).await {
                Err(e) if e.is_not_found() => return,
                _ => {}
            }
            assert!(Instant::now() < deadline, "session was not reaped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Containers of this server's session `id`, running or not.
    pub async fn containers(&self, id: &str) -> usize {
        containers_of(&self.label_prefix, id).await
    }

    /// Runs the `bento` binary against this server.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cli(&self.url, args, stdin)
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
        let rt = DockerRuntime::connect(None)
            .await
            .unwrap_or_else(|e| panic!("docker: {e}"));
        for kind in ["session", "pool", "check"] {
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
    pub async fn pool_containers(&self) -> Vec<bento::runtime::ListedContainer> {
        pool_containers(&self.label_prefix).await
    }

    /// See [`wait_pool`].
    pub async fn wait_pool(&self, idle: u64, running: usize) -> HashSet<String> {
        wait_pool(&self.url, &self.label_prefix, idle, running).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `bento ARGS` against `url`, for tests that drive the process as it
/// runs: no colour asked for, no API key from the environment, stdin empty,
/// stdout and stderr piped; killed if dropped.
pub fn cli_command(url: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_bento"));
    c.args(args)
        .env("BENTO_URL", url)
        .env("NO_COLOR", "1")
        .env_remove("BENTO_API_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

/// [`cli_command`] run to completion, within a minute.
pub async fn cli_output(url: &str, args: &[&str]) -> Output {
    let limit = Duration::from_secs(60);
    let child = cli_command(url, args)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn bento {args:?}: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("bento {args:?}: {e}"),
        Err(_) => panic!("bento {args:?} did not finish within {limit:?}"),
    }
}

pub fn run_cli(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bento"))
        .args(args)
        .env("BENTO_URL", url)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn bento: {e}"));
    if let Some(mut i) = child.stdin.take() {
        // The child may exit before reading all of it; that is its business.
        let _ = i.write_all(stdin);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("bento: {e}"))
}

/// Everything one attachment received.
#[derive(Debug, Default)]
pub struct Received {
    /// Whole data messages, reassembled from their chunks.
    pub data: Vec<Vec<u8>>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<ExitInfo>,
    pub end: Option<AttachEnd>,
    pub last_seq: u64,
}

impl Received {
    pub fn data_strings(&self) -> Vec<String> {
        self.data
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    }
}

/// Reads events until the attachment ends or `stop` says so after a data
/// message; acks everything it reads.
pub async fn receive(att: &mut Attachment, mut stop: impl FnMut(&Received) -> bool) -> Received {
    let mut r = Received::default();
    let mut partial: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ev = match tokio::time::timeout_at(deadline, att.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return r,
            Err(_) => panic!("timed out receiving; so far: {:?}", r.data_strings()),
        };
        match ev {
            Event::Output(f) => {
                assert!(f.seq > r.last_seq, "seq {} after {}", f.seq, r.last_seq);
                r.last_seq = f.seq;
                match f.stream {
                    Stream::Data => {
                        partial.extend_from_slice(&f.bytes);
                        if f.end {
                            r.data.push(std::mem::take(&mut partial));
                        }
                    }
                    Stream::Stdout => r.stdout.extend_from_slice(&f.bytes),
                    Stream::Stderr => r.stderr.extend_from_slice(&f.bytes),
                }
                att.written(f.seq);
                if f.stream == Stream::Data && f.end && stop(&r) {
                    return r;
                }
            }
            Event::Exit { seq, exit } => {
                r.last_seq = seq;
                r.exit = Some(exit);
                att.written(seq);
            }
            Event::Ended(end) => {
                r.end = Some(end);
                return r;
            }
            _ => {}
        }
    }
}

/// Containers carrying this label (`key` or `key=value`), running or not.
pub async fn labelled(label: &str) -> Vec<bento::runtime::ListedContainer> {
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

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
pub mod controller;
pub mod proxy;

/// A command's stdout, as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into()
}

/// A command's stderr, as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into()
}

/// Asserts the exit code, showing what the command said if it is wrong.
pub fn expect_code(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: stdout {:?}, stderr {:?}",
        out(o),
        err(o)
    );
}

/// One sample of the controller's `/metrics` at `url`, by its name with
/// labels.
pub async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("metrics body: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The controller's idle warm python containers (`bento_pool_ready`).
pub async fn pool_ready(url: &str) -> u64 {
    metric(url, "bento_pool_ready{image=\"python\"}").await as u64
}

/// Warm containers (idle or taken) under `label_prefix`, running or not.
pub async fn pool_containers(label_prefix: &str) -> Vec<bento::runtime::ListedContainer> {
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
        if now.len() == running && pool_ready(url).await == idle {
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

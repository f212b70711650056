//! What the Swarm suite (`tests/swarm.rs`) runs on: the cluster
//! (`cluster.rs`) and a controller in a process of its own on the host,
//! configured with `engine: swarm`, reaching the nodes over the harness's
//! host veth.

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bento::client::{AttachOptions, Attachment, Client};
use bento::config::SwarmConfig;
use bento::runtime::{Runtime, SwarmRuntime};
use bento::wire::api::{CreateSession, SessionInfo, SubmitFunction};

pub use cluster::{say, Cluster};

/// The function image, loaded on every node.
pub const IMAGE: &str = "bento/python:latest";

/// A controller on the host with `engine: swarm`.
pub struct Ctl {
    dir: tempfile::TempDir,
    pub port: u16,
    pub prefix: String,
    child: Option<Child>,
    pub client: Client,
    /// The Swarm as the test sees it (which node runs what).
    pub swarm: SwarmRuntime,
    /// The manager's socket, to remove what this controller left.
    manager_socket: String,
}

/// How to reach the cluster's engines: TLS with its client files where it
/// has them (`CLUSTER_TLS=1`), plain TCP otherwise.
pub fn swarm_config(cluster: &Cluster) -> SwarmConfig {
    let cert_path = cluster.env.get("CLUSTER_CERT_PATH").map(PathBuf::from);
    SwarmConfig {
        manager: cluster.manager().to_string(),
        node_port: cluster.node_port(),
        allow_plain_tcp: cert_path.is_none(),
        cert_path,
        ..SwarmConfig::default()
    }
}

/// The `swarm:` lines of a controller's config for the cluster.
fn swarm_yaml(cluster: &Cluster) -> String {
    let how = match cluster.env.get("CLUSTER_CERT_PATH") {
        Some(dir) => format!("cert_path: {dir}"),
        None => "allow_plain_tcp: true".into(),
    };
    format!(
        "swarm:\n  manager: {}\n  node_port: {}\n  {how}\n",
        cluster.manager(),
        cluster.node_port()
    )
}

impl Ctl {
    /// Writes its config (python image with small limits, so that 30
    /// sessions fit the cluster's reservations; `warm` warm containers) and
    /// starts it.
    pub async fn start(cluster: &Cluster, warm: usize) -> Ctl {
        Self::start_with(cluster, warm, &[]).await
    }

    /// [`Ctl::start`], with more images: each a copy of python's under
    /// another name (so another tag, `bento/NAME:latest`, which the test
    /// puts where it wants, or nowhere), with these placement constraints.
    pub async fn start_with(cluster: &Cluster, warm: usize, more: &[(&str, &[&str])]) -> Ctl {
        Self::start_full(cluster, warm, more, "").await
    }

    /// [`Ctl::start_with`], with `swarm` lines (`  registry: ...\n`) in the
    /// config's `swarm:` section (`start_timeout` is 30 s unless they say).
    pub async fn start_full(
        cluster: &Cluster,
        warm: usize,
        more: &[(&str, &[&str])],
        swarm: &str,
    ) -> Ctl {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(repo.join("config/images/python.yaml"))
            .unwrap_or_else(|e| panic!("python.yaml: {e}"));
        let yaml = yaml
            .replace("\n  memory: 268435456\n", "\n  memory: 67108864\n")
            .replace("\n  cpus: 1.0\n", "\n  cpus: 0.05\n")
            .replace("\nwarm: 0\n", &format!("\nwarm: {warm}\n"));
        assert!(
            yaml.contains("cpus: 0.05"),
            "python.yaml changed its layout"
        );
        let images = dir.path().join("images");
        write(&images.join("python.yaml"), &yaml);
        for (name, placement) in more {
            let placement = format!("\nplacement: {placement:?}\n");
            let copy = yaml
                .replace("\nname: python\n", &format!("\nname: {name}\n"))
                .replace("\nplacement: []\n", &placement);
            assert!(
                copy.contains(&format!("name: {name}")) && copy.contains(&placement),
                "python.yaml has no name or placement line"
            );
            write(&images.join(format!("{name}.yaml")), &copy);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("port: {e}"));
        let prefix = format!(
            "swt{}.bento",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let config = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\nimages_dir: {images}\n\
             driver_dir: {driver}\nlabel_prefix: {prefix}\nheartbeat_interval: 1s\n\
             engine: swarm\n{reach}{timeout}{swarm}",
            data = dir.path().join("data").display(),
            images = images.display(),
            driver = repo.join("driver").display(),
            reach = swarm_yaml(cluster),
            timeout = if swarm.contains("start_timeout:") {
                ""
            } else {
                "  start_timeout: 30s\n"
            },
        );
        write(&dir.path().join("config/bento.yaml"), &config);
        let client = Client::new(&format!("http://127.0.0.1:{port}"), None)
            .unwrap_or_else(|e| panic!("client: {e}"));
        // Under a prefix of its own, which labels nothing: the engine sweeps
        // the ghosts of its prefix's sessions, and that must be the
        // controller's doing, not the observer's.
        let swarm = SwarmRuntime::connect(&swarm_config(cluster), "observer.invalid")
            .await
            .unwrap_or_else(|e| panic!("the test's view of the Swarm: {e}"));
        let mut ctl = Ctl {
            dir,
            port,
            prefix,
            child: None,
            client,
            swarm,
            manager_socket: cluster.var("CLUSTER_MANAGER_SOCKET").to_string(),
        };
        ctl.spawn().await;
        ctl
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    /// Starts `bento serve` and waits until it answers.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_bento"))
            .args(["serve", "--config"])
            .arg(self.dir.path().join("config/bento.yaml"))
            .env("RUST_LOG", "info,bento=debug")
            .env_remove("BENTO_API_KEY")
            .env_remove("BENTO_LABEL_PREFIX")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bento serve: {e}"));
        self.child = Some(child);
        for _ in 0..600 {
            if self.client.list_sessions().await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("bento serve exited ({status}):\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bento serve did not come up:\n{}", self.log_tail());
    }

    /// SIGTERM, and waits (up to 20 s) for the graceful exit, which must
    /// succeed.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("not running");
        };
        // SAFETY: a signal to our own child, whose pid is still ours (not
        // yet waited for).
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill -TERM");
        let until = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            assert!(
                std::time::Instant::now() < until,
                "no exit after SIGTERM:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "SIGTERM exit: {status}\n{}",
            self.log_tail()
        );
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its last warnings and errors, and the last lines of its log, for
    /// failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let warnings: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        let warnings = &warnings[warnings.len().saturating_sub(30)..];
        let last = &lines[lines.len().saturating_sub(10)..];
        format!("{}\n...\n{}", warnings.join("\n"), last.join("\n"))
    }

    pub async fn submit(&self, code: &str) -> String {
        let body = SubmitFunction {
            code: code.into(),
            name: None,
            image: None,
            filename: None,
        };
        match self.client.submit_function(&body).await {
            Ok(f) => f.id,
            Err(e) => panic!("submit: {e}\n{}", self.log_tail()),
        }
    }

    /// A new session of `function`; (token, id).
    pub async fn session(&self, function: &str, args: &[&str]) -> (String, String) {
        let body = CreateSession {
            function: function.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            transient: false,
            limits: Default::default(),
            forkable: None,
            env: Default::default(),
            secrets: Vec::new(),
        };
        match self.client.create_session(&body).await {
            Ok(s) => (s.token, s.id),
            Err(e) => panic!("create session: {e}\n{}", self.log_tail()),
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

    pub async fn info(&self, token: &str) -> SessionInfo {
        self.client
            .session(token)
            .await
            .unwrap_or_else(|e| panic!("session {}: {e}", &token[..12.min(token.len())]))
    }

    /// The services carrying `PREFIX.KIND` (`session`, `pool`, ...).
    pub async fn services(&self, kind: &str) -> Vec<bento::runtime::ListedContainer> {
        self.swarm
            .list(&format!("{}.{kind}", self.prefix))
            .await
            .unwrap_or_else(|e| panic!("list services: {e}"))
    }

    /// The hostname of the node that runs session `id`.
    pub async fn node_of(&self, id: &str) -> String {
        let label = format!("{}.session={id}", self.prefix);
        let services = self
            .swarm
            .list(&label)
            .await
            .unwrap_or_else(|e| panic!("list services: {e}"));
        let [service] = services.as_slice() else {
            panic!("session {id} has {} services", services.len());
        };
        self.swarm
            .node_of(&service.id)
            .await
            .unwrap_or_else(|e| panic!("node of {id}: {e}"))
            .unwrap_or_else(|| panic!("session {id} has no node"))
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            say(&format!(
                "the controller's log ends with:\n{}",
                self.log_tail()
            ));
        }
        // Its services, so that the next test has the nodes to itself.
        let filter = format!("label={}.controller", self.prefix);
        let docker = |args: &[&str]| {
            Command::new("timeout")
                .arg("30")
                .args(["docker", "-H", &self.manager_socket])
                .args(args)
                .stderr(Stdio::null())
                .output()
        };
        if let Ok(o) = docker(&["service", "ls", "-q", "--filter", &filter]) {
            let ids = String::from_utf8_lossy(&o.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = docker(&[&["service", "rm"], ids.as_slice()].concat());
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

//! The 3-node cluster of `tests/cluster/cluster.sh`, up once per test
//! binary and torn down when the binary exits (also after failures): `up`
//! removes a cluster left by an earlier run that was killed, an `atexit`
//! hook runs `down`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, OnceCell};

static NAME: OnceLock<&'static str> = OnceLock::new();

/// The cluster's name (`swt` unless [`set_name`] said otherwise): its
/// namespaces, run dirs and subnet derive from it.
pub fn name() -> &'static str {
    NAME.get_or_init(|| "swt")
}

/// Names the cluster before its first use, so that the benchmark's never
/// collides with the test suite's.
#[allow(dead_code)] // The benchmark uses it; the suite keeps the default.
pub fn set_name(name: &'static str) {
    let _ = NAME.set(name);
}
pub const NODES: usize = 3;
/// What `CLUSTER_...` settings the suite runs with: the function image on
/// every node, every node keeping a default bridge network (the sandbox
/// must take it away), and a 1 s heartbeat (a killed node is Down in 2-4 s
/// instead of about 14), and nodes that trust the plain-HTTP registry a
/// test runs on the host side (`CLUSTER_REGISTRY`).
const SETTINGS: [(&str, &str); 4] = [
    ("CLUSTER_IMAGES", super::IMAGE),
    ("CLUSTER_BRIDGE", "1"),
    ("CLUSTER_HEARTBEAT", "1s"),
    ("CLUSTER_REGISTRY_PORT", "5015"),
];

/// Writes to the real stderr, not the test harness's capture, so that a
/// skip or the spread is seen in a plain `cargo test` too.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "swarm: {line}");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// Why the cluster suite cannot run on this machine, if it cannot: it
/// needs root, iproute2, nsenter, dockerd and the docker CLI (and jq and
/// curl for the script).
pub fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (network namespaces, extra dockerd instances)".into());
    }
    let tools = [
        "ip", "nsenter", "unshare", "dockerd", "docker", "jq", "curl", "openssl",
    ];
    let absent: Vec<&str> = tools
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !absent.is_empty() {
        return Some(format!("missing tools: {}", absent.join(", ")));
    }
    None
}

pub struct Cluster {
    pub env: HashMap<String, String>,
}

static CLUSTER: OnceCell<Option<Cluster>> = OnceCell::const_new();
/// One test at a time: they kill, drain and restart nodes.
static SERIAL: Mutex<()> = Mutex::const_new(());
static DOWN_REGISTERED: OnceLock<()> = OnceLock::new();

extern "C" fn down_at_exit() {
    let _ = run(&["down"]);
}

/// `cluster.sh ARGS` with the suite's settings, within 2 minutes.
pub fn run(args: &[&str]) -> std::io::Result<Output> {
    run_as(name(), &SETTINGS, args)
}

/// `cluster.sh ARGS` for the cluster `name` with these settings.
fn run_as(name: &str, settings: &[(&str, &str)], args: &[&str]) -> std::io::Result<Output> {
    let child = Command::new("timeout")
        .arg("120")
        .arg(script())
        .args(args)
        .env("CLUSTER_NAME", name)
        .envs(settings.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.wait_with_output()
}

fn checked(args: &[&str]) -> Output {
    match run(args) {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "cluster.sh {args:?} failed ({}):\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cluster.sh {args:?}: {e}"),
    }
}

impl Cluster {
    /// The cluster, up (once per binary), and this test's turn at it; `None`
    /// (after saying why) when this machine cannot run the suite.
    pub async fn get() -> Option<(&'static Cluster, MutexGuard<'static, ()>)> {
        let cluster = CLUSTER
            .get_or_init(|| async {
                if let Some(why) = missing() {
                    if std::env::var("BENTO_SWARM_TESTS").as_deref() == Ok("require") {
                        panic!("the Swarm cluster suite cannot run: {why}");
                    }
                    say(&format!(
                        "SKIPPED: the Swarm cluster suite cannot run here: {why}"
                    ));
                    return None;
                }
                crate::kit::ensure_image().await;
                DOWN_REGISTERED.get_or_init(|| {
                    // SAFETY: registers a plain function, once.
                    unsafe { libc::atexit(down_at_exit) };
                });
                let clock = std::time::Instant::now();
                let out = tokio::task::spawn_blocking(|| checked(&["up", &NODES.to_string()]))
                    .await
                    .unwrap_or_else(|e| panic!("cluster up: {e}"));
                say(&format!(
                    "cluster of {NODES} up in {:.1} s",
                    clock.elapsed().as_secs_f64()
                ));
                Some(Cluster {
                    env: parse_env(&String::from_utf8_lossy(&out.stdout)),
                })
            })
            .await
            .as_ref()?;
        let turn = SERIAL.lock().await;
        cluster.heal().await;
        Some((cluster, turn))
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} is not in the cluster's env"))
    }

    pub fn manager(&self) -> &str {
        self.var("CLUSTER_MANAGER")
    }

    /// The port of every node's engine API.
    pub fn node_port(&self) -> u16 {
        self.env
            .get("CLUSTER_NODE_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(2375)
    }

    /// `docker ARGS` on node `i`, through its Unix socket.
    pub fn docker(&self, i: usize, args: &[&str]) -> Output {
        let socket = self.var(&format!("NODE{i}_SOCKET")).to_string();
        Command::new("timeout")
            .arg("20")
            .arg("docker")
            .arg("-H")
            .arg(socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("docker on node {i}: {e}"))
    }

    /// `docker ARGS` on each node `i` of `nodes`, which must succeed.
    pub fn docker_ok(&self, nodes: impl IntoIterator<Item = usize>, args: &[&str]) {
        for i in nodes {
            let o = self.docker(i, args);
            let why = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "docker {args:?} on node {i}: {why}");
        }
    }

    /// Node `i`'s hostname, as the Swarm names it.
    pub fn hostname(&self, i: usize) -> String {
        format!("bcl-{}-{i}", name())
    }

    /// `cluster.sh ARGS`, which must succeed.
    pub async fn sh(&self, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            checked(&args);
        })
        .await
        .unwrap_or_else(|e| panic!("cluster.sh: {e}"));
    }

    /// Sets node `i`'s availability (`active`, `drain`, `pause`).
    pub fn availability(&self, i: usize, what: &str) {
        let id = self.var(&format!("NODE{i}_ID")).to_string();
        let o = self.docker(1, &["node", "update", "--availability", what, &id]);
        assert!(
            o.status.success(),
            "node update: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Undoes what an earlier test may have left after a failure: every
    /// node running, linked, Ready and active.
    async fn heal(&self) {
        for i in 1..=NODES {
            self.sh(&["heal-node", &i.to_string()]).await;
            self.sh(&["start-node", &i.to_string()]).await;
        }
        for i in 2..=NODES {
            self.availability(i, "active");
        }
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Waits until the manager says every node is Ready.
    pub async fn wait_ready(&self, limit: Duration) {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let o = self.docker(1, &["node", "ls", "--format", "{{.Status}}"]);
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() && text.lines().filter(|l| *l == "Ready").count() == NODES {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "nodes not all Ready: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A cluster of its own for one test (another name, subnet and settings
/// than the suite's), taken down when dropped.
pub struct Separate {
    pub cluster: Cluster,
    name: &'static str,
    settings: Vec<(&'static str, &'static str)>,
}

impl Separate {
    /// `nodes` nodes with the suite's settings plus `more`. Call it with
    /// the suite's turn held: it needs the CPU.
    pub async fn up(
        name: &'static str,
        nodes: usize,
        more: &[(&'static str, &'static str)],
    ) -> Separate {
        let mut settings: Vec<(&'static str, &'static str)> = SETTINGS.to_vec();
        settings.extend_from_slice(more);
        let for_up = settings.clone();
        let out =
            tokio::task::spawn_blocking(move || run_as(name, &for_up, &["up", &nodes.to_string()]))
                .await
                .unwrap_or_else(|e| panic!("cluster {name} up: {e}"))
                .unwrap_or_else(|e| panic!("cluster {name} up: {e}"));
        assert!(
            out.status.success(),
            "cluster {name} up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Separate {
            cluster: Cluster {
                env: parse_env(&String::from_utf8_lossy(&out.stdout)),
            },
            name,
            settings,
        }
    }
}

impl Drop for Separate {
    fn drop(&mut self) {
        let _ = run_as(self.name, &self.settings, &["down"]);
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

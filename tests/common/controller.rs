//! A controller in a process of its own (`bento serve`), on a fixed port
//! and data dir, that a test can SIGKILL, start again and measure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bento::client::Client;

/// A controller in a process of its own, on a fixed port and data dir.
pub struct Controller {
    pub dir: PathBuf,
    pub port: u16,
    pub prefix: String,
    pub child: Option<Child>,
    /// Environment variables for `bento serve`.
    pub env: Vec<(String, String)>,
}

impl Controller {
    pub async fn new(dir: &Path) -> Controller {
        Self::with_warm(dir, 0).await
    }

    /// A controller whose python image keeps `warm` containers ready.
    pub async fn with_warm(dir: &Path, warm: usize) -> Controller {
        Self::with_config(dir, warm, "").await
    }

    /// A controller with `extra` lines appended to its `bento.yaml`.
    pub async fn with_config(dir: &Path, warm: usize, extra: &str) -> Controller {
        let prefix = format!(
            "dur{}.bento",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self::make(dir, warm, extra, prefix).await
    }

    /// A controller under a given label prefix, which another may share.
    pub async fn with_prefix(dir: &Path, prefix: &str) -> Controller {
        Self::make(dir, 0, "", prefix.to_string()).await
    }

    async fn make(dir: &Path, warm: usize, extra: &str, prefix: String) -> Controller {
        super::ensure_image().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("port: {e}"));
        let repo = super::repo();
        let images = if warm == 0 {
            repo.join("config/images")
        } else {
            let yaml = std::fs::read_to_string(repo.join("config/images/python.yaml"))
                .unwrap_or_else(|e| panic!("{e}"));
            let images = dir.join("images");
            std::fs::create_dir_all(&images).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(
                images.join("python.yaml"),
                yaml.replace("\nwarm: 0\n", &format!("\nwarm: {warm}\n")),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            images
        };
        let config = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\nimages_dir: {images}\ndriver_dir: {driver}\n\
             label_prefix: {prefix}\nheartbeat_interval: 1s\n{extra}",
            data = dir.join("data").display(),
            images = images.display(),
            driver = repo.join("driver").display(),
        );
        std::fs::create_dir_all(dir.join("config")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("config/bento.yaml"), config).unwrap_or_else(|e| panic!("{e}"));
        Controller {
            dir: dir.to_path_buf(),
            port,
            prefix,
            child: None,
            env: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `bento serve` and waits until it answers.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_bento"))
            .args(["serve", "--config"])
            .arg(self.dir.join("config/bento.yaml"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bento serve: {e}"));
        self.child = Some(child);
        let client = Client::new(&self.url(), None).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..600 {
            if client.list_sessions().await.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "bento serve exited ({status}); see {}",
                    self.dir.join("serve.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "bento serve did not come up; see {}",
            self.dir.join("serve.log").display()
        );
    }

    /// This controller's identity (made at its first start), as its
    /// containers' `PREFIX.controller` label carries it.
    pub fn identity(&self) -> String {
        let path = self.dir.join("data/controller-id");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The `bento serve` process's resident memory, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.as_ref().map(|c| c.id()) else {
            panic!("the controller is not running");
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn list(&self) -> Vec<bento::runtime::ListedContainer> {
        super::labelled(&format!("{}.session", self.prefix)).await
    }

    pub async fn containers(&self) -> usize {
        self.list().await.len()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        // Whatever the test left running under this controller's labels.
        let mut ids = String::new();
        for kind in ["session", "pool", "check"] {
            let found = Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label={}.{kind}", self.prefix))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            ids.push_str(&found);
            ids.push('\n');
        }
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
    }
}

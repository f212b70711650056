//! A controller in a process of its own (`bento serve`), on a fixed port
//! and data dir, that a test can SIGKILL, start again and measure, and that
//! the bench measures. Dropping it kills it and removes every container
//! carrying its labels.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bento::client::Client;
use bento::runtime::ListedContainer;

use super::{Ctx, Res};

/// What a [`Controller`] is configured with, beyond its port, data dir and
/// the repository's images and driver.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Its label prefix; `None`: one of its own ([`super::unique_prefix`]).
    pub prefix: Option<String>,
    /// Warm containers of the python image (0: the shipped image config).
    pub warm: usize,
    /// Lines appended to its `bento.yaml`.
    pub extra: String,
    /// Environment variables for `bento serve`.
    pub env: Vec<(String, String)>,
}

/// A controller in a process of its own, on a fixed port and data dir.
pub struct Controller {
    pub dir: PathBuf,
    pub port: u16,
    pub prefix: String,
    pub child: Option<Child>,
    /// Environment variables for `bento serve`.
    pub env: Vec<(String, String)>,
    /// Dropping a running controller [stops](Controller::stop) it, sweeping
    /// its containers three times, instead of once.
    pub thorough_cleanup: bool,
    /// The temporary dir `dir` is in, if the controller made it.
    _temp: Option<tempfile::TempDir>,
}

/// What the tests' controllers add to their config: a dead client is
/// noticed within seconds.
const TEST_CONFIG: &str = "heartbeat_interval: 1s\n";

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
        Self::for_test(
            dir,
            Setup {
                warm,
                extra: extra.into(),
                ..Setup::default()
            },
        )
        .await
    }

    /// A controller under a given label prefix, which another may share.
    pub async fn with_prefix(dir: &Path, prefix: &str) -> Controller {
        Self::for_test(
            dir,
            Setup {
                prefix: Some(prefix.into()),
                ..Setup::default()
            },
        )
        .await
    }

    /// A test's controller: the image built, the tests' config and `setup`.
    async fn for_test(dir: &Path, mut setup: Setup) -> Controller {
        super::ensure_image().await;
        setup.extra.insert_str(0, TEST_CONFIG);
        Self::configure(dir, setup).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A controller in a new temporary directory (`{stem}` and random
    /// characters, removed when it is dropped).
    pub fn in_temp_dir(stem: &str, setup: Setup) -> Res<Controller> {
        let temp = tempfile::Builder::new()
            .prefix(stem)
            .tempdir()
            .ctx("temp dir")?;
        let mut c = Self::configure(temp.path(), setup)?;
        c._temp = Some(temp);
        Ok(c)
    }

    /// Writes the controller's config in `dir` (not started yet; the image
    /// is not built here).
    pub fn configure(dir: &Path, setup: Setup) -> Res<Controller> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ctx("free port")?;
        let prefix = setup.prefix.unwrap_or_else(|| super::unique_prefix("dur"));
        let repo = super::repo();
        let images = if setup.warm == 0 {
            repo.join("config/images")
        } else {
            let images = dir.join("images");
            std::fs::create_dir_all(&images).ctx("images dir")?;
            let yaml = std::fs::read_to_string(repo.join("config/images/python.yaml"))
                .ctx("config/images/python.yaml")?;
            std::fs::write(images.join("python.yaml"), with_warm(&yaml, setup.warm)?)
                .ctx("write python.yaml")?;
            images
        };
        let config = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {data}\nimages_dir: {images}\ndriver_dir: {driver}\n\
             label_prefix: {prefix}\n{extra}",
            data = dir.join("data").display(),
            images = images.display(),
            driver = repo.join("driver").display(),
            extra = setup.extra,
        );
        std::fs::create_dir_all(dir.join("config")).ctx("config dir")?;
        std::fs::write(dir.join("config/bento.yaml"), config).ctx("write bento.yaml")?;
        Ok(Controller {
            dir: dir.to_path_buf(),
            port,
            prefix,
            child: None,
            env: setup.env,
            thorough_cleanup: false,
            _temp: None,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where `bento serve` writes its log (appended to at every start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts `bento serve` and waits (30 s at most) until it answers.
    pub async fn try_start(&mut self) -> Res<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .ctx("serve.log")?;
        let child = Command::new(env!("CARGO_BIN_EXE_bento"))
            .args(["serve", "--config"])
            .arg(self.dir.join("config/bento.yaml"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("spawn bento serve")?;
        self.child = Some(child);
        let client = Client::new(&self.url(), None).ctx("client")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Up: it answers, with the list or (keys configured) a 401.
            match client.list_sessions().await {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == Some(401) => return Ok(()),
                Err(_) => {}
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "bento serve exited ({status}); {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "bento serve did not come up; {}:\n{}",
            self.log_path().display(),
            self.log_tail(20)
        ))
    }

    /// [`Controller::try_start`], or a test failure.
    pub async fn start(&mut self) {
        if let Err(e) = self.try_start().await {
            panic!("{e}");
        }
    }

    /// This controller's identity (made at its first start), as its
    /// containers' `PREFIX.controller` label carries it.
    pub fn identity(&self) -> String {
        let path = self.dir.join("data/controller-id");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The `bento serve` process's id.
    pub fn pid(&self) -> Res<u32> {
        self.child
            .as_ref()
            .map(|c| c.id())
            .ok_or_else(|| "the controller is not running".to_string())
    }

    /// The `bento serve` process's resident memory, in KiB (from /proc).
    pub fn try_rss_kib(&self) -> Res<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ctx(&format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
    }

    /// [`Controller::try_rss_kib`], or a test failure.
    pub fn rss_kib(&self) -> u64 {
        self.try_rss_kib().unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the controller and removes every container under its label
    /// prefix, sweeping three times a second apart: a create it had asked
    /// the engine for just before it died can still land.
    pub fn stop(&mut self) {
        self.kill();
        for pass in 0..3 {
            if pass > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            super::docker::remove_prefixed(&self.prefix);
        }
    }

    /// Its session containers, running or not.
    pub async fn list(&self) -> Vec<ListedContainer> {
        super::labelled(&format!("{}.session", self.prefix)).await
    }

    pub async fn containers(&self) -> usize {
        self.list().await.len()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "controller log ({}, tail):\n{}",
                self.log_path().display(),
                self.log_tail(30)
            );
        }
        if self.thorough_cleanup && self.child.is_some() {
            self.stop();
            return;
        }
        self.kill();
        // Whatever the test left running under this controller's labels.
        super::docker::remove_prefixed(&self.prefix);
    }
}

/// An image description (YAML) with its `warm` set to `warm`. Fails if it
/// has no `warm` to set: a description that changed shape must not quietly
/// leave the pool off.
pub fn with_warm(yaml: &str, warm: usize) -> Res<String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml).ctx("image description")?;
    let Some(map) = doc.as_mapping_mut() else {
        return Err("the image description is not a mapping".into());
    };
    match map.get_mut("warm") {
        Some(w) => *w = serde_yaml::Value::from(warm as u64),
        None => return Err("the image description has no `warm` key to set".into()),
    }
    serde_yaml::to_string(&doc).ctx("image description")
}

//! A real browser for the console's tests: Debian's headless Chromium,
//! driven through its chromedriver (WebDriver) with `fantoccini`.
//!
//! [`Browser::start`] answers `None`, after printing SKIPPED and why, when
//! chromium or chromedriver is missing, unless `BENTO_CONSOLE_TESTS=require`
//! (as `.ci/run` sets where it could install them): then it fails.
//! chromedriver runs on a free port in a process group of its own, the
//! browser with a profile of its own; both are ended when the [`Browser`]
//! is dropped, a failing test included.

#![allow(dead_code)]

pub mod cutter;
pub mod flow;
pub mod page;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// The longest a browser may take to come up.
const START_LIMIT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
    profile: tempfile::TempDir,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Chromium's own binary (Debian's `/usr/bin/chromium` is a wrapper script
/// that chromedriver can run too).
fn chromium() -> Option<PathBuf> {
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        return Some(real.to_path_buf());
    }
    on_path("chromium").or_else(|| on_path("chromium-browser"))
}

fn skip(why: &str) -> Option<Browser> {
    if std::env::var("BENTO_CONSOLE_TESTS").as_deref() == Ok("require") {
        panic!("BENTO_CONSOLE_TESTS=require, but {why}");
    }
    eprintln!(
        "SKIPPED: the console's browser tests: {why} (apt-get install chromium chromium-driver)"
    );
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

impl Browser {
    /// A fresh headless browser at a 1280×900 window, or `None` (skipped).
    pub async fn start() -> Option<Browser> {
        Self::start_sized(1280, 900).await
    }

    /// A fresh headless browser of `width`×`height` with the colour
    /// scheme asked for (`dark`: `prefers-color-scheme: dark`).
    pub async fn start_sized(width: u32, height: u32) -> Option<Browser> {
        Self::start_with(width, height, false).await
    }

    pub async fn start_with(width: u32, height: u32, dark: bool) -> Option<Browser> {
        let Some(chrome) = chromium() else {
            return skip("chromium is not installed");
        };
        let Some(driver_bin) = on_path("chromedriver") else {
            return skip("chromedriver is not installed");
        };
        let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let mut cmd = std::process::Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that it and the browser it starts can
        // be ended together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start chromedriver: {e}"));
        let mut b = Started {
            driver: Some(driver),
            profile: Some(profile),
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url).await;
        let mut args = vec![
            "--headless=new".to_string(),
            // As root (CI) Chromium's sandbox cannot start.
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            "--disable-background-networking".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b.profile_path().display()),
        ];
        if dark {
            args.push("--force-dark-mode".into());
        }
        // Downloads go, without asking, to a directory of the profile's.
        let downloads = b.profile_path().join("downloads");
        let mut caps = json!({
            "goog:chromeOptions": {
                "binary": chrome,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false
                }
            }
        });
        // A window is at least 500 px wide: narrower screens are emulated.
        if width < 500 {
            caps["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}
            });
        }
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START_LIMIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .unwrap_or_else(|_| panic!("chromium did not start within {START_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("start chromium through chromedriver: {e}"));
        let (driver, profile) = b.take();
        Some(Browser {
            client,
            driver,
            profile,
        })
    }

    /// Where the browser puts what it downloads.
    pub fn downloads(&self) -> PathBuf {
        self.profile.path().join("downloads")
    }

    /// Waits until the browser has downloaded a file named `name`, and
    /// answers its bytes. While a download runs, Chromium writes it under
    /// another name (`*.crdownload`) and renames it at the end.
    pub async fn downloaded(&self, name: &str, limit: Duration) -> Vec<u8> {
        let path = self.downloads().join(name);
        let start = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(&path) {
                return bytes;
            }
            let there: Vec<String> = std::fs::read_dir(self.downloads())
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                start.elapsed() < limit,
                "no download {name} after {limit:?}; the directory holds {there:?}"
            );
            // The browser's own process writes it: nothing to wait on but
            // the file system.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the browser session cleanly (the drop ends the processes).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// chromedriver answers `GET /status` once it listens.
async fn wait_ready(url: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            start.elapsed() < START_LIMIT,
            "chromedriver did not answer within {START_LIMIT:?}"
        );
        // A process of its own, with no event to wait for: ask again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The processes before they are a [`Browser`]: ended if starting fails.
struct Started {
    driver: Option<std::process::Child>,
    profile: Option<tempfile::TempDir>,
}

impl Started {
    fn profile_path(&self) -> &Path {
        self.profile
            .as_ref()
            .map(|p| p.path())
            .unwrap_or(Path::new("/"))
    }
    fn take(&mut self) -> (std::process::Child, tempfile::TempDir) {
        match (self.driver.take(), self.profile.take()) {
            (Some(d), Some(p)) => (d, p),
            _ => unreachable!("taken once"),
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let (Some(d), Some(p)) = (self.driver.as_mut(), self.profile.as_ref()) {
            end(d, p.path());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        end(&mut self.driver, self.profile.path());
    }
}

/// Ends chromedriver's process group, then any browser process left with
/// this profile (one that left the group), each by its pid.
fn end(driver: &mut std::process::Child, profile: &Path) {
    if let Ok(pid) = i32::try_from(driver.id()) {
        // SAFETY: a plain signal to the group this test created.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = driver.kill();
    let _ = driver.wait();
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.split('\0').any(|a| a == needle) {
            // SAFETY: a signal to a browser process of this test's profile.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

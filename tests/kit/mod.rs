//! The test kit: one harness for the integration tests (`tests/*.rs`) and
//! the benchmark (`benches/e2e.rs`), so that a controller is started,
//! configured, talked to and cleaned up after in one way only.
//!
//! - [`server`]: [`TestServer`], a controller in this process
//!   (`bento::controller::run`) against the real Docker engine, or on the
//!   fake runtime, without Docker ([`TestServer::start_fake`]);
//! - [`controller`]: [`controller::Controller`], `bento serve` in a process
//!   of its own, that a test can SIGKILL, start again and measure;
//! - [`client`]: submitting, creating, waiting for a session, reading an
//!   attachment ([`receive`]), through the client library;
//! - [`requests`]: raw HTTP and WebSocket requests and the documented error
//!   answer, for the API's own tests;
//! - [`cli`]: running the `bento` binary;
//! - [`docker`]: the function image, containers by label, and removing
//!   what a test left behind;
//! - [`proxy`]: a fault-injecting TCP proxy.
//!
//! Every test binary includes it as `mod kit;`; the bench as
//! `#[path = "../tests/kit/mod.rs"] mod kit;`. Helpers come in two forms
//! where the bench needs them: `try_*` answers an error that says what was
//! being done (the bench reports a failed measurement and goes on), the
//! plain one panics with it (a test fails).

// Each binary compiles the whole kit and uses a part of it: what one of
// them leaves unused is used by another, not dead.
#![allow(dead_code)]

pub mod cli;
pub mod client;
pub mod controller;
pub mod docker;
pub mod functions;
pub mod proxy;
pub mod requests;
pub mod server;

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Output;

use bento::config::Config;

// What most tests use, at the kit's top (`use kit::{receive, TestServer}`).
// Every binary compiles these lines and uses some: the rest are not unused
// imports.
#[allow(unused_imports)]
pub use cli::{cli_command, cli_output, cli_run, run_cli};
#[allow(unused_imports)]
pub use client::{receive, Received};
#[allow(unused_imports)]
pub use docker::{containers_of, ensure_image, labelled, pool_containers, wait_pool};
#[allow(unused_imports)]
pub use server::TestServer;

/// A result whose error says what was being done.
pub type Res<T> = Result<T, String>;

/// Turns any error into a `String` that says what was being done.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The repository (this package's root).
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

/// A label prefix no other controller uses: `{stem}` and 8 random hex
/// digits, then `.bento`. A starting controller removes the containers under
/// its prefix that its database does not know (and that it made), so
/// controllers running at the same time, in one binary or several, each
/// need their own.
pub fn unique_prefix(stem: &str) -> String {
    format!(
        "{stem}{}.bento",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

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
pub async fn try_metric(url: &str, name: &str) -> Res<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .ctx("metrics")?
        .text()
        .await
        .ctx("metrics body")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in /metrics:\n{text}"))
}

/// [`try_metric`], or a test failure.
pub async fn metric(url: &str, name: &str) -> f64 {
    try_metric(url, name)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The controller's idle warm python containers (`bento_pool_ready`).
pub async fn try_pool_ready(url: &str) -> Res<u64> {
    Ok(try_metric(url, "bento_pool_ready{image=\"python\"}").await? as u64)
}

/// [`try_pool_ready`], or a test failure.
pub async fn pool_ready(url: &str) -> u64 {
    try_pool_ready(url).await.unwrap_or_else(|e| panic!("{e}"))
}

//! Running the `bento` binary (`CARGO_BIN_EXE_bento`, which cargo sets for
//! integration tests and benches alike) against a controller.

use std::future::Future;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The longest any one CLI command may take before the test gives up.
pub const LIMIT: Duration = Duration::from_secs(60);

/// `bento ARGS` against `url`, for tests that drive the process as it
/// runs: no colour asked for, no API key from the environment, stdin empty,
/// stdout and stderr piped; killed if dropped.
pub fn cli_command(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bento"));
    c.args(args)
        .env("BENTO_URL", url)
        .env("NO_COLOR", "1")
        .env_remove("BENTO_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Spawns a command, or fails the test.
pub fn spawn(mut c: Command) -> Child {
    c.spawn().unwrap_or_else(|e| panic!("spawn bento: {e}"))
}

/// Runs a command to completion, within [`LIMIT`].
pub async fn finish(c: Command) -> Output {
    let what = format!("{:?}", c.as_std().get_args().collect::<Vec<_>>());
    match tokio::time::timeout(LIMIT, spawn(c).wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("bento {what}: {e}"),
        Err(_) => panic!("bento {what} did not finish within {LIMIT:?}"),
    }
}

/// [`cli_command`] run to completion, within [`LIMIT`]. The future owns
/// what it needs, so several can be joined.
pub fn cli_output(url: &str, args: &[&str]) -> impl Future<Output = Output> + 'static {
    finish(cli_command(url, args))
}

/// Runs `bento ARGS` to completion with `stdin` as its input (then EOF),
/// within [`LIMIT`]. The child is spawned at once, so the returned future
/// owns everything it needs.
pub fn cli_run(url: &str, args: &[&str], stdin: &[u8]) -> impl Future<Output = Output> + 'static {
    let mut c = cli_command(url, args);
    c.stdin(Stdio::piped());
    let mut child = spawn(c);
    if let Some(mut input) = child.stdin.take() {
        let data = stdin.to_vec();
        // The command may exit before reading it all; that is its business.
        tokio::spawn(async move { input.write_all(&data).await });
    }
    let what = format!("bento {args:?}");
    async move {
        match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what} did not finish within {LIMIT:?}"),
        }
    }
}

/// `bento ARGS` against `url` with `stdin`, blocking the calling thread.
pub fn run_cli(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bento"))
        .args(args)
        .env("BENTO_URL", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

//! What the CLI says around the edges: hints that name the setting that
//! was used, reattach commands ready to paste, the serve log off a
//! terminal, and the base image `images ls` reports.

mod kit;

use std::process::{Output, Stdio};
use std::time::Duration;

use kit::{err, expect_code, out, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

/// `bento ARGS` with `env` set (and BENTO_URL, NO_COLOR, BENTO_BASE_IMAGE
/// and SSL settings unset unless given there), stdin empty.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bento"));
    c.args(args)
        .env_remove("BENTO_URL")
        .env_remove("NO_COLOR")
        .env_remove("BENTO_API_KEY")
        .env_remove(bento::config::BASE_IMAGE_ENV)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn finish(mut c: Command) -> Output {
    let child = c.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        other => panic!("bento: {other:?}"),
    }
}

fn closed_url() -> String {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("bind: {e}"),
    }
}

fn hint(o: &Output) -> String {
    err(o)
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unreachable_hint_names_the_flag_or_the_variable() {
    let closed = closed_url();
    let elsewhere = closed_url();
    // The flag wins over the variable, and the hint says which it was.
    let o = finish(command(
        &["ls", "--url", &closed],
        &[("BENTO_URL", &elsewhere)],
    ))
    .await;
    expect_code(&o, 1, "unreachable via --url");
    assert_eq!(
        hint(&o),
        format!("is `bento serve` running at {closed}? (from --url)")
    );
    let o = finish(command(
        &["functions", "rm", "x"],
        &[("BENTO_URL", &closed)],
    ))
    .await;
    assert!(err(&o).contains("cannot reach"), "{}", err(&o));
    let o = finish(command(&["ls"], &[("BENTO_URL", &closed)])).await;
    assert_eq!(
        hint(&o),
        format!("is `bento serve` running at {closed}? (from BENTO_URL)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_prints_a_reattach_command_with_the_url_flag() {
    let s = TestServer::start().await;
    let f = s
        .submit("import time\ndef main():\n    send('ready')\n    time.sleep(300)\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let mut c = command(
        &["attach", &token, "--no-stdin", "--url", &s.url],
        &[("NO_COLOR", "1")],
    );
    let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let line = tokio::time::timeout(LIMIT, BufReader::new(stdout).lines().next_line()).await;
    assert!(matches!(&line, Ok(Ok(Some(l))) if l == "ready"), "{line:?}");
    let pid = child.id().unwrap_or_else(|| panic!("pid"));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    assert!(matches!(kill, Ok(st) if st.success()), "{kill:?}");
    let o = match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        other => panic!("attach: {other:?}"),
    };
    assert_eq!(o.status.code(), Some(130), "{}", err(&o));
    let want = format!("Reattach with: bento attach {token} --url {}", s.url);
    assert!(err(&o).contains(&want), "{want:?} not in {:?}", err(&o));
    s.client.kill_session(&token).await.ok();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_log_has_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = dir.path().join("bento.yaml");
    let images = kit::repo().join("config/images");
    let yaml = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nimages_dir: {}\nlabel_prefix: test{}.bento\n",
        dir.path().join("data").display(),
        images.display(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("write: {e}"));
    let path = kit::path_str(&config);
    let mut child = command(&["serve", "--config", &path], &[])
        .spawn()
        .unwrap_or_else(|e| panic!("spawn serve: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("stderr"));
    let mut lines = BufReader::new(stderr).lines();
    // Up to the line that says it listens: every line so far is plain.
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, lines.next_line()).await {
            Ok(Ok(Some(l))) => {
                let listening = l.contains("listening");
                seen.push(l);
                if listening {
                    break;
                }
            }
            other => panic!("serve stopped logging: {other:?} after {seen:?}"),
        }
    }
    assert!(
        seen.iter().all(|l| !l.contains('\x1b')),
        "escape codes in {seen:?}"
    );
    assert!(seen.iter().any(|l| l.contains("INFO")), "{seen:?}");
    let pid = child.id().unwrap_or_else(|| panic!("pid"));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(matches!(term, Ok(st) if st.success()), "{term:?}");
    let st = tokio::time::timeout(LIMIT, child.wait()).await;
    assert!(matches!(st, Ok(Ok(s)) if s.success()), "serve exit: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_ls_shows_the_base_actually_used() {
    let config = kit::path_str(&kit::repo().join("config/bento.yaml"));
    let row = |o: &Output| -> serde_json::Value {
        expect_code(o, 0, "images ls --json");
        let all: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(o)));
        all.as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == "python").cloned())
            .unwrap_or_else(|| panic!("no python image in {all}"))
    };
    let plain = row(&finish(command(
        &["images", "ls", "--json", "--config", &config],
        &[],
    ))
    .await);
    assert_eq!(plain["base"], "python:3.12-slim");
    assert_eq!(plain["base_from"], "image");

    let env = [(bento::config::BASE_IMAGE_ENV, "example/base:1")];
    let o = finish(command(
        &["images", "ls", "--json", "--config", &config],
        &env,
    ))
    .await;
    let over = row(&o);
    assert_eq!(over["base"], "example/base:1");
    assert_eq!(over["base_from"], "BENTO_BASE_IMAGE");
    assert_eq!(over["yaml_base"], "python:3.12-slim");
    let o = finish(command(&["images", "ls", "--config", &config], &env)).await;
    assert!(
        out(&o).contains("example/base:1 (from BENTO_BASE_IMAGE; the YAML says python:3.12-slim)"),
        "{}",
        out(&o)
    );
}

//! Environment variables and secrets (docs/env.md), end to end on the real
//! engine through the CLI: the image's `env:`, `--env-file`, `-e` and
//! `--secret` in that order of precedence, on a warm container and a cold
//! one; a fork gets the same; and a secret's value shows up nowhere but in
//! the function's environment.

mod kit;

use kit::controller::Controller;
use kit::{cli_output, cli_run, err, expect_code, out, wait_pool};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Reports its environment (the secret reversed, so that its value itself
/// is never output), then echoes its input until it ends.
const REPORT: &str = r#"
import json, os

def main():
    secret = os.environ.get("DB_PASS", "")
    seen = {k: os.environ.get(k) for k in ("GREETING", "ONLY_IMAGE", "FROM_FILE", "RUN_ONLY")}
    seen["secret_reversed"] = secret[::-1]
    send(json.dumps(seen, sort_keys=True))
    while True:
        m = recv()
        if m is None:
            break
        send(m)
"#;

/// The first line of a run's output, as JSON.
fn report(o: &std::process::Output) -> Value {
    let text = out(o);
    let line = text.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text:?} / {}", err(o)))
}

/// Every file under `dir`, as bytes, but the one holding the secret.
fn files_except(dir: &std::path::Path, skip: &std::path::Path, into: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if p.is_dir() {
            files_except(&p, skip, into);
        } else if let Ok(bytes) = std::fs::read(&p) {
            into.push((p.display().to_string(), bytes));
        }
    }
}

fn expect_code_std(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_precedence_secrets_and_no_trace_of_a_secret_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One warm container: a warm session gets its environment as a cold
    // one does (in START, not in the container's spec).
    let mut c = Controller::with_config(dir.path(), 1, "").await;
    let yaml = dir.path().join("images/python.yaml");
    let mut text = std::fs::read_to_string(&yaml).expect("python.yaml");
    text.push_str("env:\n  GREETING: from-image\n  ONLY_IMAGE: image-only\n");
    std::fs::write(&yaml, text).expect("write python.yaml");
    c.env.push(("RUST_LOG".into(), "debug".into()));
    c.start().await;
    let url = c.url();
    for (args, flags) in [
        (
            &["run", "--help"][..],
            &["--env <KEY[=VALUE]>", "--env-file", "--secret <NAME[=VAR]>"][..],
        ),
        (&["secrets", "--help"][..], &["set", "ls", "rm"][..]),
    ] {
        let help = out(&cli_output(&url, args).await);
        for f in flags {
            assert!(help.contains(f), "{args:?} lacks {f}: {help}");
        }
    }

    // A value no test could guess, and one that a log line would show.
    let secret = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let o = cli_run(
        &url,
        &["secrets", "set", "db_pass"],
        format!("{secret}\n").as_bytes(),
    )
    .await;
    expect_code(&o, 0, "secrets set");
    assert!(err(&o).contains("stored"), "{}", err(&o));
    let o = cli_output(&url, &["secrets", "ls"]).await;
    expect_code(&o, 0, "secrets ls");
    assert!(out(&o).contains("db_pass"), "{}", out(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("data/secrets/db_pass");
        let mode = std::fs::metadata(&file)
            .expect("secret file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the controller's user reads it");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            secret,
            "newline dropped"
        );
    }

    let code = dir.path().join("report.py");
    std::fs::write(&code, REPORT).expect("write report.py");
    let o = cli_output(
        &url,
        &["submit", &code.display().to_string(), "--name", "report"],
    )
    .await;
    expect_code(&o, 0, "submit");
    let env_file = dir.path().join("run.env");
    std::fs::write(
        &env_file,
        "# comment\nGREETING=from-file\nFROM_FILE=file-only\n",
    )
    .expect("write run.env");
    let env_file = env_file.display().to_string();

    wait_pool(&url, &c.prefix, 1, 1).await;
    let flags = [
        "--env-file",
        &env_file,
        "-e",
        "GREETING=from-flag",
        "-e",
        "RUN_ONLY=flag-only",
        "--secret",
        "db_pass=DB_PASS",
    ];
    let want = serde_json::json!({
        "GREETING": "from-flag",
        "ONLY_IMAGE": "image-only",
        "FROM_FILE": "file-only",
        "RUN_ONLY": "flag-only",
        "secret_reversed": secret.chars().rev().collect::<String>(),
    });
    // Warm (the image's default limits), then cold (other limits).
    for extra in [&[][..], &["--memory", "200m"][..]] {
        let mut args = vec!["run"];
        args.extend(flags);
        args.extend(extra);
        args.push("report");
        let o = cli_run(&url, &args, b"").await;
        expect_code(&o, 0, "run");
        assert_eq!(report(&o), want, "with {extra:?}");
    }
    // Without the run's own: the image's alone.
    let o = cli_run(&url, &["run", "report"], b"").await;
    expect_code(&o, 0, "run without env");
    let plain = report(&o);
    assert_eq!(plain["GREETING"], "from-image");
    assert_eq!(plain["RUN_ONLY"], Value::Null);

    // A detached session, to inspect, list and fork.
    let mut args = vec!["run", "-d"];
    args.extend(flags);
    args.push("report");
    let o = cli_output(&url, &args).await;
    expect_code(&o, 0, "run -d");
    let token = out(&o).trim().to_string();
    // Its report made before the fork below, so the fork replays it (and
    // checks it against the parent's) instead of showing it.
    let client = kit::client::client(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = client.session(&token).await.expect("session");
        if info.pending_messages >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no report from {}", info.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inspect = cli_output(&url, &["inspect", &token]).await;
    expect_code(&inspect, 0, "inspect");
    let shown = out(&inspect);
    assert!(shown.contains("db_pass as DB_PASS"), "{shown}");
    assert!(
        shown.contains("GREETING") && shown.contains("RUN_ONLY"),
        "{shown}"
    );
    assert!(
        !shown.contains("from-flag"),
        "env values are not shown: {shown}"
    );

    // A fork replays with the same environment: its replayed report must
    // match the parent's digest, or it would end as diverged.
    let fork = cli_output(&url, &["fork", "-d", &token]).await;
    expect_code(&fork, 0, "fork");
    let fork_token = out(&fork).trim().to_string();
    let o = cli_run(&url, &["attach", &fork_token], b"after-fork\n").await;
    expect_code(&o, 0, "attach to the fork");
    assert_eq!(out(&o).trim(), "after-fork", "{}", err(&o));

    // Refusals name the variable or secret, and nothing else.
    for (args, says) in [
        (vec!["run", "-d", "-e", "BENTO_X=1", "report"], "reserved"),
        (
            vec!["run", "-d", "--secret", "db_pass=BENTO_Y", "report"],
            "reserved",
        ),
        (
            vec!["run", "-d", "--secret", "nope", "report"],
            "no secret named nope",
        ),
        (vec!["run", "-d", "-e", "1BAD=x", "report"], "not a valid"),
        (
            vec![
                "run",
                "-d",
                "-e",
                "DB_PASS=x",
                "--secret",
                "db_pass=DB_PASS",
                "report",
            ],
            "both",
        ),
    ] {
        let o = cli_output(&url, &args).await;
        expect_code(&o, 1, &format!("{args:?}"));
        assert!(err(&o).contains(says), "{args:?}: {}", err(&o));
    }

    // Every surface: CLI listings and JSON, the API's lists, metrics, the
    // spec, the container's own spec at the engine, the controller's log
    // and every file in its data dir but the secret's own.
    let mut surfaces: Vec<(String, Vec<u8>)> = Vec::new();
    for args in [
        vec!["inspect", "--json", token.as_str()],
        vec!["inspect", fork_token.as_str()],
        vec!["ls", "--json"],
        vec!["ls"],
        vec!["secrets", "ls", "--json"],
        vec!["functions"],
    ] {
        let o = cli_output(&url, &args).await;
        surfaces.push((format!("bento {args:?}"), [o.stdout, o.stderr].concat()));
    }
    for path in [
        "/metrics",
        "/openapi.json",
        "/v1/sessions",
        "/v1/secrets",
        "/v1/images",
    ] {
        let body = reqwest::get(format!("{url}{path}"))
            .await
            .and_then(|r| r.error_for_status())
            .expect(path)
            .bytes()
            .await
            .expect(path);
        if path == "/openapi.json" {
            for documented in ["/v1/secrets/{name}", "SecretUse", "SetSecret"] {
                assert!(contains(&body, documented), "the spec lacks {documented}");
            }
        }
        surfaces.push((path.to_string(), body.to_vec()));
    }
    // The engine's view of every container the controller made.
    let mut ids = Vec::new();
    for kind in kit::docker::KINDS {
        let listed = kit::labelled(&format!("{}.{kind}", c.prefix)).await;
        ids.extend(listed.into_iter().map(|l| l.id));
    }
    assert!(
        ids.len() >= 2,
        "the detached session and its fork run: {ids:?}"
    );
    let docker = std::process::Command::new("docker")
        .arg("inspect")
        .args(&ids)
        .output()
        .expect("docker inspect");
    expect_code_std(&docker, "docker inspect");
    surfaces.push(("docker inspect".into(), docker.stdout));
    let log = std::fs::read(c.log_path()).expect("serve.log");
    assert!(contains(&log, "secret set"), "the log is the debug one");
    surfaces.push(("serve.log".into(), log));
    let secret_file = dir.path().join("data/secrets/db_pass");
    files_except(&dir.path().join("data"), &secret_file, &mut surfaces);
    for (what, bytes) in &surfaces {
        assert!(!contains(bytes, &secret), "the secret's value is in {what}");
    }

    // Removing it: listed no more, and a fork of a session that used it is
    // refused, naming it.
    let o = cli_output(&url, &["secrets", "rm", "db_pass"]).await;
    expect_code(&o, 0, "secrets rm");
    let o = cli_output(&url, &["fork", "-d", &token]).await;
    expect_code(&o, 1, "fork without the secret");
    assert!(err(&o).contains("no secret named db_pass"), "{}", err(&o));
    let o = cli_output(&url, &["secrets", "ls", "--json"]).await;
    assert_eq!(out(&o).trim(), "[]");
    c.stop();
}

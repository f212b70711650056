//! Two controllers on one engine, under one label prefix (as a `bento
//! serve` beside the compose stack with the defaults is): each one's
//! reconcile leaves the other's running functions alone, in whichever order
//! they are started and restarted; and one data dir takes one controller.

mod kit;

use std::process::{Command, Stdio};
use std::time::Duration;

use bento::client::{AttachOptions, Client, Event};
use bento::wire::api::SessionState;
use kit::controller::Controller;

/// Echoes each input with a running count, so a lost or repeated input
/// shows in the numbers.
const COUNTING_ECHO: &str = r#"
def main():
    n = 0
    while True:
        m = recv()
        if m is None:
            return
        n += 1
        send(b"%d:" % n + m)
"#;

struct Side {
    ctl: Controller,
    client: Client,
    token: String,
    /// Inputs sent so far.
    sent: u64,
}

/// Submits the counting echo and starts a session of it; its token.
async fn start_echo(client: &Client) -> String {
    let f = kit::client::submit(client, COUNTING_ECHO).await;
    kit::client::create(client, &f, &[]).await
}

impl Side {
    async fn new(dir: &std::path::Path, prefix: &str) -> Side {
        let mut ctl = Controller::with_prefix(dir, prefix).await;
        ctl.start().await;
        let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
        let token = start_echo(&client).await;
        Side {
            ctl,
            client,
            token,
            sent: 0,
        }
    }

    /// One more input; its echo must carry the next count: nothing was
    /// lost or repeated, and the function never restarted.
    async fn echoes(&mut self, what: &str) {
        let mut att = self
            .client
            .attach(&self.token, AttachOptions::default())
            .await
            .unwrap_or_else(|e| panic!("attach ({what}): {e}"));
        att.input()
            .send(what.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("input ({what}): {e}"));
        self.sent += 1;
        let want = format!("{}:{what}", self.sent);
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = att.next().await {
                if let Event::Output(f) = ev {
                    att.written(f.seq);
                    if f.bytes.ends_with(what.as_bytes()) {
                        return String::from_utf8_lossy(&f.bytes).into_owned();
                    }
                }
            }
            String::new()
        })
        .await
        .unwrap_or_else(|_| panic!("no echo ({what})"));
        assert_eq!(got, want, "{what}");
        att.detach().await;
        let info = self
            .client
            .session(&self.token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.state, SessionState::Running, "{what}");
    }
}

fn serve_log(ctl: &Controller) -> String {
    std::fs::read_to_string(ctl.dir.join("serve.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_one_engine_leave_each_other_alone() {
    let prefix = format!(
        "two{}.bento",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (da, db) = (
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    );
    let mut a = Side::new(da.path(), &prefix).await;
    let mut b = Side::new(db.path(), &prefix).await;
    assert_ne!(a.ctl.identity(), b.ctl.identity());
    a.echoes("a first").await;
    b.echoes("b first").await;

    // A restarts while B runs, then B while A runs; then both, B first.
    for (step, order) in [("a alone", "a"), ("b alone", "b"), ("both", "ba")] {
        for side in order.chars() {
            let s = if side == 'a' { &mut a } else { &mut b };
            s.ctl.kill();
        }
        for side in order.chars() {
            let s = if side == 'a' { &mut a } else { &mut b };
            s.ctl.start().await;
        }
        a.echoes(&format!("a after {step}")).await;
        b.echoes(&format!("b after {step}")).await;
    }
    // Each saw the other's container and said so, naming its controller.
    for (me, other) in [(&a, &b), (&b, &a)] {
        let log = serve_log(&me.ctl);
        assert!(
            log.contains("leaving alone containers of another controller")
                && log.contains(&other.ctl.identity()),
            "no warning naming {} in {}",
            other.ctl.identity(),
            me.ctl.dir.display()
        );
        assert!(!log.contains("removing orphan container"), "{log}");
    }
    assert_eq!(a.ctl.containers().await, 2, "one session each, both kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_controller_on_one_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut first = Controller::new(dir.path()).await;
    first.start().await;
    // The same config on another port: the same data dir.
    let config = std::fs::read_to_string(dir.path().join("config/bento.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let second = dir.path().join("second.yaml");
    let config = config.replace(
        &format!("listen: 127.0.0.1:{}", first.port),
        &format!("listen: 127.0.0.1:{port}"),
    );
    std::fs::write(&second, config).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_bento"))
        .args(["serve", "--config"])
        .arg(&second)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second controller started: {stderr}"
    );
    let pid = first.child.as_ref().map(|c| c.id()).unwrap_or_default();
    assert!(
        stderr.contains("already using the data dir") && stderr.contains(&pid.to_string()),
        "{stderr}"
    );
    // The first one is unharmed.
    let client = Client::new(&first.url(), None).unwrap_or_else(|e| panic!("{e}"));
    assert!(client.list_sessions().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_label_prefix_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    let prefix = format!(
        "env{}.bento",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    ctl.env.push(("BENTO_LABEL_PREFIX".into(), prefix.clone()));
    ctl.start().await;
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let token = start_echo(&client).await;
    let mine = kit::labelled(&format!("{prefix}.session")).await;
    assert_eq!(mine.len(), 1, "the session's container carries the prefix");
    assert_eq!(
        mine[0].labels.get(&format!("{prefix}.controller")),
        Some(&ctl.identity())
    );
    assert!(
        ctl.list().await.is_empty(),
        "nothing under the config's prefix"
    );
    client.kill_session(&token).await.ok();
    ctl.kill();
    // (Controller's cleanup knows only the config's prefix.)
    let ids: Vec<String> = mine.into_iter().map(|c| c.id).collect();
    let _ = Command::new("docker")
        .args(["rm", "-f"])
        .args(&ids)
        .stdout(Stdio::null())
        .status();
}

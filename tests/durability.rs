//! The controller's own crash: `bento serve` is SIGKILLed while sessions
//! run, attached and detached, and started again on the same data dir.

mod kit;

use kit::controller::Controller;
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bento::client::{AttachEnd, AttachOptions, Attachment, Client, Event};
use bento::wire::api::{ExitReason, SessionState, Stream};
use kit::client::{create, submit};
use tokio::task::JoinHandle;

/// Numbered output at a steady pace from a thread; with `echo`, also
/// echoes every input line until end of input.
const WORKER: &str = r#"
import threading, time

def main(n, echo):
    def produce():
        for i in range(n):
            send(f"{i}:" + "x" * 200)
            time.sleep(0.01)
    t = threading.Thread(target=produce)
    t.start()
    count = 0
    if echo:
        while True:
            m = recv()
            if m is None:
                break
            send(b"echo:" + m)
            count += 1
    t.join()
    send(f"done {count}")
"#;

const N: usize = 2000;
const LINES: usize = 50;

struct Outcome {
    numbered: usize,
    echoes: usize,
    done: Option<String>,
    exit: Option<i32>,
    end: Option<AttachEnd>,
    /// The last seq received.
    last: u64,
}

/// Reads an attachment to its end, checking order and exactly-once.
async fn collect(att: Attachment) -> Outcome {
    collect_from(att, 0, Arc::default()).await
}

/// `collect`, for an attachment whose numbered output starts at `numbered`;
/// counts the bytes of data received in `received` as it goes.
async fn collect_from(mut att: Attachment, numbered: usize, received: Arc<AtomicU64>) -> Outcome {
    let mut o = Outcome {
        numbered,
        echoes: 0,
        done: None,
        exit: None,
        end: None,
        last: 0,
    };
    let mut last = 0;
    let mut partial = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, att.next()).await {
        match ev {
            Event::Output(f) => {
                assert!(f.seq > last, "seq {} after {last}", f.seq);
                last = f.seq;
                o.last = last;
                if f.stream != Stream::Data {
                    att.written(f.seq);
                    continue;
                }
                received.fetch_add(f.bytes.len() as u64, Ordering::Relaxed);
                partial.extend_from_slice(&f.bytes);
                if f.end {
                    let m = String::from_utf8_lossy(&std::mem::take(&mut partial)).into_owned();
                    if let Some(line) = m.strip_prefix("echo:") {
                        assert_eq!(line, format!("line-{}", o.echoes), "input once, in order");
                        o.echoes += 1;
                    } else if m.starts_with("done ") {
                        o.done = Some(m);
                    } else {
                        let want = format!("{}:{}", o.numbered, "x".repeat(200));
                        assert_eq!(m, want, "numbered output once, in order");
                        o.numbered += 1;
                    }
                }
                att.written(f.seq);
            }
            Event::Exit { seq, exit } => {
                last = seq;
                o.last = seq;
                o.exit = Some(exit.code);
                att.written(seq);
            }
            Event::Ended(end) => {
                o.end = Some(end);
                break;
            }
            _ => {}
        }
    }
    o
}

fn patient() -> AttachOptions {
    AttachOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        give_up_after: Some(Duration::from_secs(120)),
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(2),
        ..AttachOptions::default()
    }
}

/// Polls the session until `pred` holds, within a minute.
async fn wait_for(
    client: &Client,
    token: &str,
    what: &str,
    pred: impl Fn(&bento::wire::api::SessionInfo) -> bool,
) {
    kit::client::wait_session(client, token, what, Duration::from_secs(60), pred)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_sigkilled_controller() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = dir.path();
    let mut ctl = Controller::new(dir).await;
    ctl.start().await;
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let f = submit(&client, WORKER).await;

    // Ten sessions with reconnecting clients that stream input; ten detached.
    let mut attached: Vec<(String, JoinHandle<Outcome>)> = Vec::new();
    for _ in 0..10 {
        let token = create(&client, &f, &[&N.to_string(), "true"]).await;
        let att = client
            .attach(&token, patient())
            .await
            .unwrap_or_else(|e| panic!("attach: {e}"));
        let input = att.input();
        tokio::spawn(async move {
            for i in 0..LINES {
                if input.send(format!("line-{i}").into_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = input.eof().await;
        });
        attached.push((token, tokio::spawn(collect(att))));
    }
    let mut detached = Vec::new();
    for _ in 0..10 {
        detached.push(create(&client, &f, &[&N.to_string(), "false"]).await);
    }
    // Mid-stream: every session has produced output and none has ended.
    for token in &detached {
        wait_for(&client, token, "output", |i| i.pending_messages >= 20).await;
    }
    for token in attached.iter().map(|(t, _)| t).chain(&detached) {
        let info = client
            .session(token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.state, SessionState::Running, "killed mid-stream");
    }

    ctl.kill();
    // The functions go on producing while nobody is there to read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctl.start().await;

    for (token, task) in attached {
        let o = task.await.unwrap_or_else(|e| panic!("collect: {e}"));
        assert_eq!(o.numbered, N, "{token:.8}: all numbered output");
        assert_eq!(o.echoes, LINES, "{token:.8}: all echoes");
        assert_eq!(
            o.done,
            Some(format!("done {LINES}")),
            "{token:.8}: input applied once"
        );
        assert_eq!(o.exit, Some(0));
        assert!(matches!(o.end, Some(AttachEnd::Finished)), "{:?}", o.end);
    }
    for token in &detached {
        let att = client
            .attach(token, patient())
            .await
            .unwrap_or_else(|e| panic!("attach after restart: {e}"));
        let o = collect(att).await;
        assert_eq!(o.numbered, N, "{token:.8}: all numbered output");
        assert_eq!(o.done.as_deref(), Some("done 0"));
        assert_eq!(o.exit, Some(0));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ctl.containers().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers left behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = client
        .list_sessions()
        .await
        .map(|l| l.len())
        .unwrap_or(usize::MAX);
    assert_eq!(left, 0, "every session reaped");
}

/// Numbered output as fast as the function can send it: the stream does
/// not go quiet, so an attached client is sent output that the controller
/// holds in memory only (it spools lazily, see `session::log`).
const STREAMER: &str = r#"
def main(n):
    for i in range(n):
        send(f"{i}:" + "x" * 200)
    send("done 0")
"#;

/// Starts a STREAMER session with an attached client that acknowledges
/// nothing before the exit, so what it is sent is durable only once the
/// controller spools it; returns once the client has received output that
/// the controller has not spooled (the spool holds a prefix of the stream,
/// so that is whatever the client has beyond the spooled bytes). The client
/// collects in the returned task; `reconnect` is its attach option.
/// Room for a client that holds everything unacknowledged (see
/// `output_max_messages`, 100,000 by default).
const HOLD_ALL: &str = "output_max_messages: 1000000\n";

async fn stream_ahead_of_the_spool(
    ctl: &Controller,
    many: usize,
    reconnect: bool,
) -> (String, JoinHandle<Outcome>) {
    let url = ctl.url();
    let client = Client::new(&url, None).unwrap_or_else(|e| panic!("{e}"));
    let f = submit(&client, STREAMER).await;
    let token = create(&client, &f, &[&many.to_string()]).await;
    let opts = AttachOptions {
        ack_every: u64::MAX,
        ack_interval: Duration::from_secs(3600),
        reconnect,
        ..patient()
    };
    let att = client
        .attach(&token, opts)
        .await
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let received = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(collect_from(att, 0, received.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let spooled = kit::metric(&url, "bento_spool_written_bytes_total").await;
        let got = received.load(Ordering::Relaxed) as f64;
        // A margin, since the spool goes on growing until the kill.
        if got > spooled + 262144.0 {
            return (token, task);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never held unspooled output: received {got}, spooled {spooled}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_sent_before_it_was_spooled_survives_a_sigkilled_controller() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The client below acks nothing until it reconnects, so the session
    // must be allowed to hold all of its 400,000 messages unacknowledged.
    let mut ctl = Controller::with_config(dir.path(), 0, HOLD_ALL).await;
    ctl.start().await;
    let many = 400_000;
    let (_, task) = stream_ahead_of_the_spool(&ctl, many, true).await;
    ctl.kill();
    ctl.start().await;

    // The client reconnects: the driver sends again what was not durable,
    // under the same seqs, and the client gets each message exactly once.
    let o = task.await.unwrap_or_else(|e| panic!("collect: {e}"));
    assert_eq!(
        o.numbered, many,
        "all numbered output, once, in order (end: {:?})",
        o.end
    );
    assert_eq!(o.done.as_deref(), Some("done 0"));
    assert_eq!(o.exit, Some(0));
    assert!(matches!(o.end, Some(AttachEnd::Finished)), "{:?}", o.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ahead_of_a_log_that_cannot_catch_up_is_told_how_the_function_ended() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The client below acks nothing until it reconnects, so the session
    // must be allowed to hold all of its 400,000 messages unacknowledged.
    let mut ctl = Controller::with_config(dir.path(), 0, HOLD_ALL).await;
    ctl.start().await;
    let many = 400_000;
    let (token, task) = stream_ahead_of_the_spool(&ctl, many, false).await;
    ctl.kill();
    let before = task.await.unwrap_or_else(|e| panic!("collect: {e}"));
    assert!(before.numbered < many, "killed mid-stream");
    // The function dies while the controller is away, and with it the
    // driver that held the output not yet durable.
    let containers = ctl.list().await;
    assert_eq!(containers.len(), 1);
    let killed = Command::new("docker")
        .args(["kill", &containers[0].id])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("docker kill: {e}"));
    assert!(killed.success());
    ctl.start().await;

    // The restored log ends with the exit, after what was spooled. The
    // client had been sent more than that, so the exit's seq is one it
    // already holds output under: it is sent the exit anyway, learns how
    // the function ended and is done, instead of waiting for output that
    // cannot come.
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let info = client
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.state, SessionState::Ended, "its end is in its info");
    assert!(
        before.last >= info.last_seq,
        "the client had {} messages, the restored log {} (with its exit)",
        before.last,
        info.last_seq
    );
    let opts = AttachOptions {
        after: before.last,
        reconnect: false,
        ..patient()
    };
    let att = client
        .attach(&token, opts)
        .await
        .unwrap_or_else(|e| panic!("attach after={}: {e}", before.last));
    let after = collect_from(att, before.numbered, Arc::default()).await;
    assert_eq!(after.numbered, before.numbered, "no output comes again");
    assert!(after.exit.is_some(), "the exit is delivered");
    assert!(
        matches!(after.end, Some(AttachEnd::Finished)),
        "{:?}",
        after.end
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_during_the_outage_is_reported_and_orphans_are_removed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    ctl.start().await;
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    // One ends by itself, one is cut off by the kernel mid-way; both while
    // the controller is down.
    let clean = submit(
        &client,
        "import time, sys\nsend('hello')\ntime.sleep(1)\nsend('bye')\nsys.exit(3)\n",
    )
    .await;
    let hard = submit(
        &client,
        "import time, os\nsend('hello')\ntime.sleep(1)\nos._exit(5)\n",
    )
    .await;
    let clean = create(&client, &clean, &[]).await;
    let hard = create(&client, &hard, &[]).await;
    wait_for(&client, &clean, "hello", |i| i.pending_messages > 0).await;
    wait_for(&client, &hard, "hello", |i| i.pending_messages > 0).await;
    ctl.kill();

    // An orphan: a container with this controller's labels but no session.
    let docker = bento::runtime::images::connect(&kit::repo_config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let labelled =
        |kind: &str, what: &str, controller: String| bollard::models::ContainerCreateBody {
            image: Some("bento/python:latest".into()),
            labels: Some(std::collections::HashMap::from([
                (format!("{}.{kind}", ctl.prefix), what.to_string()),
                (format!("{}.controller", ctl.prefix), controller),
            ])),
            ..Default::default()
        };
    // Ours, another controller's under the same prefix, and a syntax
    // check's container, as a controller killed mid-check leaves it.
    let check = format!("{}.check", ctl.prefix);
    for (kind, what, controller) in [
        ("session", "s-orphan", ctl.identity()),
        ("session", "s-orphan", "c-0123456789abcdef".to_string()),
        ("check", "python", ctl.identity()),
    ] {
        docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                labelled(kind, what, controller),
            )
            .await
            .unwrap_or_else(|e| panic!("create orphan: {e}"));
    }
    assert_eq!(ctl.containers().await, 4);
    assert_eq!(kit::labelled(&check).await.len(), 1);
    // The hard one exits while nobody is there. (The clean one's driver
    // waits for the controller's acknowledgement before exiting, so its
    // container stays up until the restart.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ctl.list().await.iter().any(|c| !c.running) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "os._exit never ended its container"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctl.start().await;
    assert_eq!(
        ctl.containers().await,
        3,
        "our orphan is removed at start, the other controller's is left alone"
    );
    assert_eq!(kit::labelled(&check).await.len(), 0, "so is the check's");

    for (token, want_reason, want_data) in [
        (&clean, ExitReason::Exited { code: 3 }, vec!["hello", "bye"]),
        (&hard, ExitReason::Exited { code: 5 }, vec!["hello"]),
    ] {
        wait_for(&client, token, "ended", |i| i.state == SessionState::Ended).await;
        let info = client
            .session(token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.exit.map(|e| e.reason), Some(want_reason));
        let mut att = client
            .attach(token, patient())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let r = kit::receive(&mut att, |_| false).await;
        assert_eq!(r.data_strings(), want_data);
    }
    // Both sessions are reaped; the other controller's container is still
    // left alone (the test's cleanup removes it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ctl.containers().await > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers left behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_and_leaves_functions_running() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    ctl.start().await;
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let f = submit(
        &client,
        "import time\nfor i in range(100):\n    send(str(i))\n    time.sleep(0.05)\n",
    )
    .await;
    let token = create(&client, &f, &[]).await;
    let att = client
        .attach(&token, patient())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reader = tokio::spawn(collect_strings(att));

    let Some(child) = ctl.child.as_mut() else {
        panic!("not running")
    };
    let pid = child.id().to_string();
    let started = std::time::Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(matches!(status, Ok(s) if s.success()));
    let exited = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ctl.child = None;
    assert!(exited.success(), "graceful exit: {exited:?}");
    assert_eq!(ctl.containers().await, 1, "the function keeps running");

    // The client reconnects by itself once the controller is back.
    ctl.start().await;
    let got = reader.await.unwrap_or_else(|e| panic!("{e}"));
    let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

async fn collect_strings(mut att: Attachment) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(ev) = att.next().await {
        match ev {
            Event::Output(f) => {
                if f.stream == Stream::Data {
                    out.push(String::from_utf8_lossy(&f.bytes).into_owned());
                }
                att.written(f.seq);
            }
            Event::Exit { seq, .. } => att.written(seq),
            Event::Ended(_) => break,
            _ => {}
        }
    }
    out
}

/// A session on a warm container survives a SIGKILLed controller; the idle
/// warm container that controller left is removed at the next start and
/// the pool is filled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_warm_sessions_and_replaces_idle_warm_containers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::with_warm(dir.path(), 1).await;
    ctl.start().await;
    let client = Client::new(&ctl.url(), None).unwrap_or_else(|e| panic!("{e}"));
    let first = kit::wait_pool(&ctl.url(), &ctl.prefix, 1, 1).await;
    let f = submit(&client, "send('ready')\nsend(b'got ' + recv())\n").await;
    let token = create(&client, &f, &[]).await;
    let info = client
        .session(&token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(info.warm, "the session took the warm container");
    wait_for(&client, &token, "ready", |i| i.pending_messages > 0).await;
    // Taken plus its replacement.
    let both = kit::wait_pool(&ctl.url(), &ctl.prefix, 1, 2).await;
    let idle: Vec<&String> = both.difference(&first).collect();
    assert_eq!(idle.len(), 1);
    ctl.kill();

    ctl.start().await;
    let after = kit::wait_pool(&ctl.url(), &ctl.prefix, 1, 2).await;
    assert!(after.is_superset(&first), "the session's container is kept");
    assert!(!after.contains(idle[0]), "the old idle one is removed");
    let all: Vec<String> = kit::pool_containers(&ctl.prefix)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(!all.contains(idle[0]), "removed, not just stopped");

    let att = client
        .attach(&token, patient())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let input = att.input();
    input
        .send(b"input".to_vec())
        .await
        .unwrap_or_else(|e| panic!("send: {e}"));
    input.eof().await.unwrap_or_else(|e| panic!("eof: {e}"));
    let got = collect_strings(att).await;
    assert_eq!(got, vec!["ready", "got input"]);
}

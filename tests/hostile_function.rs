//! Trust boundaries: what a hostile function does to the controller. Each
//! test plays the attacker against a real `bento serve` (a process of its
//! own, so a hung or bloated controller shows as such) on the real engine,
//! and checks that only the attacker's session is harmed.

mod kit;

use std::path::Path;
use std::time::{Duration, Instant};

use bento::client::{AttachOptions, Client, Event};
use bento::wire::api::{ExitReason, SessionInfo, SessionState};
use kit::client::{create as start, submit};
use kit::controller::Controller;

/// Writes forged CREDIT frames to the driver's own frame descriptor, as
/// any function can (the driver's objects are in its process).
const FORGE_CREDIT: &str = r#"
import _bento_wire as wire, gc, os, time

def main(mode):
    writer = next(o for o in gc.get_objects() if isinstance(o, wire.FrameWriter))
    head = wire.HEADER.pack(wire.KIND_CREDIT, 0, 0, 8)
    if mode == "backwards":
        recv()
        forged = head + wire.U64.pack(1) + head + wire.U64.pack(0)
    else:
        forged = head + wire.U64.pack(2**64 - 1)
    send("forging")
    os.write(writer._fd, forged)
    time.sleep(600)
"#;

/// Answers the next RESUME with a forged input count.
const FORGE_SYNC: &str = r#"
import _bento_wire as wire, time

_resume = wire.FrameWriter.resume

def _forged(self, offset, nonce, received):
    _resume(self, offset, nonce, 1 << 40)

wire.FrameWriter.resume = _forged

def main():
    send("armed")
    time.sleep(600)
"#;

/// Never answers RESUME.
const SILENT: &str = r#"
import _bento_wire as wire, time

wire.FrameWriter.resume = lambda self, *args: None

def main():
    send("armed")
    time.sleep(600)
"#;

const ECHO: &str = r#"
def main():
    while True:
        m = recv()
        if m is None:
            return
        send(b"echo:" + m)
"#;

const FLOOD: &str = r#"
def main():
    while True:
        send(b"")
"#;

fn client(ctl: &Controller) -> Client {
    kit::client::client(&ctl.url())
}

/// Polls the session until `pred` holds, within a minute.
async fn wait(
    c: &Client,
    token: &str,
    what: &str,
    pred: impl Fn(&SessionInfo) -> bool,
) -> SessionInfo {
    kit::client::wait_session(c, token, what, Duration::from_secs(60), pred)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `/healthz` answers 200 within 5 s.
async fn healthy(ctl: &Controller) {
    let answer = reqwest::Client::new()
        .get(format!("{}/healthz", ctl.url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match answer {
        Ok(r) => assert_eq!(r.status(), 200, "healthz"),
        Err(e) => panic!("healthz did not answer: {e}"),
    }
}

/// Sends one line to an echo session and waits for its echo.
async fn echoes(c: &Client, token: &str, line: &str) {
    let mut att = c
        .attach(token, AttachOptions::default())
        .await
        .unwrap_or_else(|e| panic!("attach echo: {e}"));
    att.input()
        .send(line.as_bytes().to_vec())
        .await
        .unwrap_or_else(|e| panic!("input: {e}"));
    let want = format!("echo:{line}");
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = att.next().await {
            if let Event::Output(f) = ev {
                att.written(f.seq);
                if f.bytes[..] == *want.as_bytes() {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(got.ok(), Some(true), "no echo of {line}");
    att.detach().await;
}

fn lost_message(info: &SessionInfo) -> Option<String> {
    match info.exit.as_ref().map(|e| &e.reason) {
        Some(ExitReason::Lost { message }) => Some(message.clone()),
        _ => None,
    }
}

fn protocol_message(info: &SessionInfo) -> Option<String> {
    match info.exit.as_ref().map(|e| &e.reason) {
        Some(ExitReason::ProtocolError { message }) => Some(message.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_credit_ends_that_session_alone() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    ctl.start().await;
    let c = client(&ctl);
    let echo = start(&c, &submit(&c, ECHO).await, &[]).await;
    echoes(&c, &echo, "before").await;
    let forge = submit(&c, FORGE_CREDIT).await;

    // 2^64-1 inputs consumed, of none written.
    let ahead = start(&c, &forge, &["ahead"]).await;
    let info = wait(&c, &ahead, "the forged credit ends it", |i| {
        i.exit.is_some()
    })
    .await;
    let message = protocol_message(&info).unwrap_or_else(|| panic!("{:?}", info.exit));
    assert!(message.contains("only 0 were written"), "{message}");
    healthy(&ctl).await;
    echoes(&c, &echo, "after ahead").await;

    // A count that goes backwards, after one real input.
    let backwards = start(&c, &forge, &["backwards"]).await;
    let att = c
        .attach(&backwards, AttachOptions::default())
        .await
        .unwrap_or_else(|e| panic!("attach: {e}"));
    att.input()
        .send(b"one".to_vec())
        .await
        .unwrap_or_else(|e| panic!("input: {e}"));
    let info = wait(&c, &backwards, "the backwards credit ends it", |i| {
        i.exit.is_some()
    })
    .await;
    let message = protocol_message(&info).unwrap_or_else(|| panic!("{:?}", info.exit));
    assert!(message.contains("backwards"), "{message}");
    drop(att);
    healthy(&ctl).await;
    echoes(&c, &echo, "after backwards").await;
    let info = c.session(&echo).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.state, SessionState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_sync_ends_that_session_and_every_restart_serves() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::new(dir.path()).await;
    ctl.start().await;
    let c = client(&ctl);
    let echo = start(&c, &submit(&c, ECHO).await, &[]).await;
    let forged = start(&c, &submit(&c, FORGE_SYNC).await, &[]).await;
    wait(&c, &forged, "armed", |i| i.last_seq >= 1).await;
    echoes(&c, &echo, "before").await;

    ctl.kill();
    ctl.start().await;
    healthy(&ctl).await;
    let info = wait(&c, &forged, "the forged SYNC ends it", |i| i.exit.is_some()).await;
    let message = lost_message(&info).unwrap_or_else(|| panic!("{:?}", info.exit));
    assert!(message.contains("more than were written"), "{message}");
    echoes(&c, &echo, "after the first restart").await;

    // And again: nothing of it is left to stop a start.
    ctl.kill();
    ctl.start().await;
    healthy(&ctl).await;
    echoes(&c, &echo, "after the second restart").await;
    let info = c.session(&forged).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(lost_message(&info).is_some(), "{:?}", info.exit);
    assert_eq!(ctl.containers().await, 2, "both containers are still kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_are_resumed_while_the_api_serves() {
    const SILENT_SESSIONS: usize = 5;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Long enough that the silent ones are certainly still resuming while
    // the echo session is back.
    let mut ctl = Controller::with_config(dir.path(), 0, "resume_timeout: 20s\n").await;
    ctl.start().await;
    let c = client(&ctl);
    let silent_fn = submit(&c, SILENT).await;
    let mut silent = Vec::new();
    for _ in 0..SILENT_SESSIONS {
        silent.push(start(&c, &silent_fn, &[]).await);
    }
    let echo = start(&c, &submit(&c, ECHO).await, &[]).await;
    for t in &silent {
        wait(&c, t, "armed", |i| i.last_seq >= 1).await;
    }
    echoes(&c, &echo, "before").await;

    ctl.kill();
    let clock = Instant::now();
    ctl.start().await;
    let serving = clock.elapsed();
    healthy(&ctl).await;
    // The echo session is back and answers while all five are resuming.
    wait(&c, &echo, "echo resumed", |i| {
        i.state == SessionState::Running
    })
    .await;
    echoes(&c, &echo, "while they resume").await;
    let listed = c.list_sessions().await.unwrap_or_else(|e| panic!("{e}"));
    let resuming = listed
        .iter()
        .filter(|i| i.state == SessionState::Resuming)
        .count();
    assert_eq!(resuming, SILENT_SESSIONS, "listed as resuming: {listed:?}");
    match c.close_session(&silent[0]).await {
        Err(e) => {
            assert_eq!(e.status(), Some(503), "{e}");
            assert!(e.to_string().contains("resuming"), "{e}");
        }
        Ok(()) => panic!("a resuming session was closed"),
    }
    eprintln!("serving {serving:?} after the start, with {SILENT_SESSIONS} silent sessions");
    // Then each ends as lost, without holding up the others.
    for t in &silent {
        let info = wait(&c, t, "silent session lost", |i| i.exit.is_some()).await;
        let message = lost_message(&info).unwrap_or_else(|| panic!("{:?}", info.exit));
        assert!(message.contains("did not answer RESUME"), "{message}");
    }
    healthy(&ctl).await;
}

/// The spool files' total size.
fn spool_bytes(data: &Path) -> u64 {
    let Ok(dir) = std::fs::read_dir(data.join("spool")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_messages_is_held_within_the_bounds() {
    const MAX_MESSAGES: u64 = 20_000;
    // What the bounds allow: MAX_MESSAGES entries of ENTRY_OVERHEAD (64 B)
    // each, in memory or on disk, per session, and a little more.
    const ENTRY: u64 = 64;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::with_config(
        dir.path(),
        0,
        &format!("output_max_messages: {MAX_MESSAGES}\n"),
    )
    .await;
    ctl.start().await;
    let c = client(&ctl);
    let flood = submit(&c, FLOOD).await;
    let idle_rss = ctl.rss_kib();

    // Nobody attached: held on disk, up to the message bound.
    let detached = start(&c, &flood, &[]).await;
    let info = wait(&c, &detached, "the message bound", |i| {
        i.pending_messages >= MAX_MESSAGES
    })
    .await;
    assert_eq!(info.pending_messages, MAX_MESSAGES);
    let spool = spool_bytes(&ctl.dir.join("data"));
    assert!(spool <= MAX_MESSAGES * ENTRY, "spool {spool} B");

    // Attached, reading but never acknowledging.
    let watched = start(&c, &flood, &[]).await;
    let mut att = c
        .attach(&watched, AttachOptions::default())
        .await
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Event::Output(_)) = att.next().await {
            n += 1; // never att.written(): nothing is acknowledged
        }
        n
    });
    let info = wait(&c, &watched, "the message bound, attached", |i| {
        i.pending_messages >= MAX_MESSAGES
    })
    .await;
    assert_eq!(info.pending_messages, MAX_MESSAGES);
    // A read-only page is bounded by its size in bytes, overhead included.
    let page = c
        .output_page(&detached, 0)
        .await
        .unwrap_or_else(|e| panic!("page: {e}"));
    assert!(!page.complete);
    assert!(
        page.messages.len() as u64 <= (1 << 20) / ENTRY + 1,
        "{}",
        page.messages.len()
    );
    healthy(&ctl).await;
    // Both floods are held: the controller grew by what two sessions at
    // their bounds may hold (index, memory window, queue), not by the
    // flood's length.
    let rss = ctl.rss_kib();
    let grown = rss.saturating_sub(idle_rss);
    eprintln!("controller RSS idle {idle_rss} KiB, with two floods held {rss} KiB");
    assert!(grown < 64 * 1024, "the controller grew by {grown} KiB");
    let again = c.session(&detached).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.pending_messages, MAX_MESSAGES,
        "still held at the bound"
    );
    for t in [&detached, &watched] {
        c.kill_session(t)
            .await
            .unwrap_or_else(|e| panic!("kill: {e}"));
    }
    reader.abort();
}

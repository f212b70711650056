//! The session state machine against a fake runtime: no Docker needed.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Attached, ClientEvent, InputItem, SessionHandle, ToClient};
use crate::config::{Config, ImageSpec};
use crate::controller::create::{Launcher, NewSession};
use crate::runtime::fake::{frame, FakeContainer, FakeRuntime};
use crate::runtime::OutputChunk;
use crate::session::log::ENTRY_OVERHEAD;
use crate::session::spawn::SessionContext;
use crate::wire::api::{CloseReason, ExitReason, FunctionInfo, ServerMsg, SessionState, Stream};
use crate::wire::driver::{Header, Kind};

pub(super) struct Fixture {
    pub(super) fake: FakeRuntime,
    pub(super) launcher: Launcher,
    _dir: tempfile::TempDir,
}

pub(super) fn fixture(tweak: impl FnOnce(&mut Config)) -> Fixture {
    fixture_on(tweak, CancellationToken::new(), TaskTracker::new())
}

/// A controller's session machinery on the fake runtime, with this
/// shutdown token and task tracker.
pub(super) fn fixture_on(
    tweak: impl FnOnce(&mut Config),
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let spec = ImageSpec::builtin_python(dir.path());
    config.images.insert(spec.name.clone(), spec);
    tweak(&mut config);
    let fake = FakeRuntime::default();
    let db = crate::session::store::Db::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let ctx = SessionContext::new(
        &config,
        Arc::new(fake.clone()),
        Arc::new(db),
        shutdown,
        tracker,
    );
    let launcher = Launcher::new(Arc::new(config), ctx);
    Fixture {
        fake,
        launcher,
        _dir: dir,
    }
}

pub(super) fn function() -> FunctionInfo {
    FunctionInfo {
        id: "fn-test".into(),
        name: None,
        image: "python".into(),
        size: 0,
        created_at: 0,
        filename: "function.py".into(),
    }
}

impl Fixture {
    pub(super) async fn session(&self) -> (String, SessionHandle, FakeContainer) {
        self.session_of_kind(false).await
    }

    async fn session_of_kind(&self, transient: bool) -> (String, SessionHandle, FakeContainer) {
        let function = function();
        let new = NewSession {
            function: &function,
            code: "send('x')".into(),
            args: vec![],
            transient,
            limits: &Default::default(),
            forkable: true,
            fork: None,
            env: Default::default(),
            tenant: "default".into(),
        };
        let created = self
            .launcher
            .create(new)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        let handle = self
            .launcher
            .sessions
            .get(&created.token)
            .unwrap_or_else(|| panic!("session not registered"));
        let mut c = self
            .fake
            .take_container()
            .unwrap_or_else(|| panic!("no container"));
        // The code is handed over first, as the START frame.
        let mut header = [0u8; 8];
        c.stdin.read_exact(&mut header).await.expect("read stdin");
        let header = Header::parse(&header).unwrap_or_else(|e| panic!("a bad header: {e}"));
        assert_eq!(header.kind, Kind::Start);
        let len = header.len;
        let mut body = vec![0u8; len];
        c.stdin.read_exact(&mut body).await.expect("read stdin");
        assert!(String::from_utf8_lossy(&body).contains("send('x')"));
        (created.token, handle, c)
    }
}

pub(super) async fn attach(h: &SessionHandle, after: u64) -> Attached {
    match h.attach(after).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => panic!("attach refused: {e}"),
        Err(e) => panic!("attach: {e}"),
    }
}

pub(super) async fn next(a: &mut Attached) -> ToClient {
    match tokio::time::timeout(Duration::from_secs(10), a.rx.recv()).await {
        Ok(Some(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

pub(super) fn output(m: ToClient) -> (u64, Stream, Bytes) {
    match m {
        ToClient::Output(f) => (f.seq, f.stream, f.bytes),
        other => panic!("expected output, got {other:?}"),
    }
}

pub(super) async fn wait_state(h: &SessionHandle, state: SessionState) {
    for _ in 0..1000 {
        if h.info().await.expect("session info").state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("session never reached {state}");
}

#[tokio::test]
async fn output_is_numbered_exit_is_last_and_the_session_is_reaped_after_ack() {
    let f = fixture(|_| {});
    let (token, h, c) = f.session().await;
    f.fake
        .push(&c.id, frame(Kind::Stdout, false, b"printed\n"))
        .await;
    f.fake.push(&c.id, frame(Kind::Data, true, b"sent")).await;
    f.fake
        .push(&c.id, OutputChunk::Stderr(Bytes::from_static(b"oops")))
        .await;
    f.fake.exit(&c.id, 0, false);
    wait_state(&h, SessionState::Ended).await;

    let mut a = attach(&h, 0).await;
    assert!(matches!(
        a.hello,
        ServerMsg::Hello {
            last_seq: 4,
            input_next: 1,
            ..
        }
    ));
    assert_eq!(
        output(next(&mut a).await),
        (1, Stream::Stdout, Bytes::from_static(b"printed\n"))
    );
    assert_eq!(
        output(next(&mut a).await),
        (2, Stream::Data, Bytes::from_static(b"sent"))
    );
    assert_eq!(
        output(next(&mut a).await),
        (3, Stream::Stderr, Bytes::from_static(b"oops"))
    );
    match next(&mut a).await {
        ToClient::Msg(ServerMsg::Exit { seq: 4, exit }) => {
            assert_eq!(exit.reason, ExitReason::Exited { code: 0 })
        }
        other => panic!("expected exit, got {other:?}"),
    }
    // Not reaped while output is unacknowledged.
    assert!(f.launcher.sessions.get(&token).is_some());
    h.client_event(a.client, ClientEvent::Ack(4))
        .await
        .expect("ack");
    assert_eq!(
        (&mut a.closed).await.expect("close reason"),
        CloseReason::Finished
    );
    // Everything is delivered and acknowledged: the session may be reaped
    // already, and then there is nobody to tell (`SessionGone`).
    let _ = h.client_event(a.client, ClientEvent::Gone).await;
    for _ in 0..1000 {
        if f.launcher.sessions.get(&token).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(f.launcher.sessions.get(&token).is_none(), "reaped");
    assert_eq!(f.fake.removed(), vec![c.id.clone()]);
}

#[tokio::test]
async fn unacknowledged_output_is_replayed_and_acked_output_is_not() {
    let f = fixture(|_| {});
    let (_token, h, c) = f.session().await;
    for m in ["a", "b", "c"] {
        f.fake
            .push(&c.id, frame(Kind::Data, true, m.as_bytes()))
            .await;
    }
    let mut a = attach(&h, 0).await;
    for want in 1..=3 {
        assert_eq!(output(next(&mut a).await).0, want);
    }
    h.client_event(a.client, ClientEvent::Ack(1))
        .await
        .expect("ack");
    h.client_event(a.client, ClientEvent::Gone)
        .await
        .expect("client gone");

    // Reattaching with after=0 resumes after what was acknowledged.
    let mut b = attach(&h, 0).await;
    assert_eq!(
        output(next(&mut b).await),
        (2, Stream::Data, Bytes::from_static(b"b"))
    );
    assert_eq!(output(next(&mut b).await).0, 3);
    // A client that holds up to 2 gets only what follows.
    let mut c2 = attach(&h, 2).await;
    assert_eq!(output(next(&mut c2).await).0, 3);
    // ...but `after` is no ack: 2 stays held until acknowledged.
    assert_eq!(h.info().await.expect("session info").pending_messages, 2);
    h.client_event(c2.client, ClientEvent::Ack(3))
        .await
        .expect("ack");
    assert_eq!(h.info().await.expect("session info").pending_messages, 0);
    // Asking beyond the end is refused.
    assert!(matches!(h.attach(9).await, Ok(Err(_))));
}

#[tokio::test]
async fn a_new_attach_takes_over_and_close_detaches() {
    let f = fixture(|_| {});
    let (_token, h, _c) = f.session().await;
    let a = attach(&h, 0).await;
    let b = attach(&h, 0).await;
    assert_eq!(
        a.closed.await.expect("close reason"),
        CloseReason::TakenOver
    );
    assert!(h.info().await.expect("session info").attached);
    // A stale event from the replaced client changes nothing.
    h.client_event(a.client, ClientEvent::Gone)
        .await
        .expect("client gone");
    assert!(h.info().await.expect("session info").attached);
    h.close().await.expect("close");
    assert_eq!(
        b.closed.await.expect("close reason"),
        CloseReason::ClosedByUser
    );
    let info = h.info().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!info.attached);
    assert_eq!(info.state, SessionState::Running);
}

#[tokio::test]
async fn input_is_written_once_in_order_and_gaps_are_protocol_errors() {
    let f = fixture(|_| {});
    let (_token, h, mut c) = f.session().await;
    let mut a = attach(&h, 0).await;
    let client = a.client;
    let item = |seq, b: &'static [u8]| InputItem {
        client,
        seq,
        bytes: Some(Bytes::from_static(b)),
    };
    a.input.send(item(1, b"one")).await.expect("send input");
    a.input.send(item(1, b"one")).await.expect("send input"); // a resend
    a.input.send(item(2, b"two")).await.expect("send input");
    let mut buf = vec![0u8; 2 * 8 + 6];
    c.stdin.read_exact(&mut buf).await.expect("read stdin");
    assert_eq!(Kind::from_u8(buf[0]), Some(Kind::Input));
    assert_eq!(&buf[8..11], b"one");
    assert_eq!(&buf[19..22], b"two");
    // Acks are cumulative and reach the client.
    let mut acked = 0;
    while acked < 2 {
        if let ToClient::Msg(ServerMsg::InputAck { seq }) = next(&mut a).await {
            acked = seq;
        }
    }
    assert_eq!(acked, 2);
    // Nothing else was written: the duplicate was dropped.
    let extra = tokio::time::timeout(Duration::from_millis(100), c.stdin.read_u8()).await;
    assert!(extra.is_err(), "duplicate input was written");
    // A gap closes the connection with a protocol reason.
    a.input.send(item(5, b"five")).await.expect("send input");
    match a.closed.await {
        Ok(CloseReason::Protocol { message }) => assert!(message.contains("skips")),
        other => panic!("expected protocol close, got {other:?}"),
    }
    // A new client learns where input stands.
    let mut b = attach(&h, 0).await;
    assert!(matches!(
        b.hello,
        ServerMsg::Hello {
            input_next: 3,
            input_closed: false,
            ..
        }
    ));
    // End of input is applied once; a second one, and data after it, from a
    // client that reattached, are acknowledged and discarded.
    let eof = |seq| InputItem {
        client: b.client,
        seq,
        bytes: None,
    };
    b.input.send(eof(3)).await.expect("send input");
    b.input.send(eof(4)).await.expect("send input");
    b.input
        .send(InputItem {
            client: b.client,
            seq: 5,
            bytes: Some(Bytes::from_static(b"late")),
        })
        .await
        .expect("send input");
    let mut acked = 0;
    while acked < 5 {
        if let ToClient::Msg(ServerMsg::InputAck { seq }) = next(&mut b).await {
            acked = seq;
        }
    }
    let mut eof_frame = [0u8; 8];
    c.stdin
        .read_exact(&mut eof_frame)
        .await
        .expect("read stdin");
    assert_eq!(Header::parse(&eof_frame).map(|h| h.kind), Ok(Kind::Eof));
    let extra = tokio::time::timeout(Duration::from_millis(100), c.stdin.read_u8()).await;
    assert!(extra.is_err(), "nothing is written after end of input");
    let again = attach(&h, 0).await;
    assert!(matches!(
        again.hello,
        ServerMsg::Hello {
            input_next: 6,
            input_closed: true,
            ..
        }
    ));
}

#[tokio::test]
async fn garbage_on_stdout_kills_the_function_with_a_reason() {
    let f = fixture(|_| {});
    let (_token, h, c) = f.session().await;
    f.fake
        .push(
            &c.id,
            OutputChunk::Stdout(Bytes::from_static(b"this is no frame")),
        )
        .await;
    wait_state(&h, SessionState::Ended).await;
    let info = h.info().await.unwrap_or_else(|e| panic!("{e}"));
    match info.exit.map(|e| e.reason) {
        Some(ExitReason::ProtocolError { .. }) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(f.fake.killed(), vec![c.id.clone()]);
}

#[tokio::test]
async fn at_the_output_cap_the_container_is_not_read_until_a_client_acks() {
    // Room for two 8-byte messages with their overhead, not three.
    let f = fixture(|c| c.output_cap = 2 * (8 + ENTRY_OVERHEAD as u64));
    let (_token, h, c) = f.session().await;
    let id = c.id.clone();
    let fake = f.fake.clone();
    // The pusher blocks once the session stops reading.
    let pusher = tokio::spawn(async move {
        for m in ["8 bytes!", "8 bytes?", "8 bytes."] {
            fake.push(&id, frame(Kind::Data, true, m.as_bytes())).await;
        }
    });
    let mut a = attach(&h, 0).await;
    assert_eq!(output(next(&mut a).await).0, 1);
    assert_eq!(output(next(&mut a).await).0, 2);
    let third = tokio::time::timeout(Duration::from_millis(200), a.rx.recv()).await;
    assert!(third.is_err(), "nothing past the cap until an ack");
    assert_eq!(h.info().await.expect("session info").pending_bytes, 16);
    h.client_event(a.client, ClientEvent::Ack(2))
        .await
        .expect("ack");
    assert_eq!(
        output(next(&mut a).await),
        (3, Stream::Data, Bytes::from_static(b"8 bytes."))
    );
    pusher.await.expect("pusher task");
}

#[tokio::test(start_paused = true)]
async fn an_ended_session_nobody_reads_is_reaped_after_the_ttl() {
    let f = fixture(|c| c.session_ttl = Duration::from_secs(3600));
    let (token, h, c) = f.session().await;
    f.fake.push(&c.id, frame(Kind::Data, true, b"unread")).await;
    f.fake.exit(&c.id, 0, false);
    wait_state(&h, SessionState::Ended).await;
    assert!(f.launcher.sessions.get(&token).is_some());
    tokio::time::sleep(Duration::from_secs(3601)).await;
    for _ in 0..100 {
        if f.launcher.sessions.get(&token).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        f.launcher.sessions.get(&token).is_none(),
        "reaped after the ttl"
    );
    assert_eq!(f.fake.removed(), vec![c.id.clone()]);
}

#[tokio::test]
async fn oom_and_kill_are_reported_as_such() {
    let f = fixture(|_| {});
    let (_t, h, c) = f.session().await;
    f.fake.exit(&c.id, 137, true);
    wait_state(&h, SessionState::Ended).await;
    let reason = h.info().await.expect("session info").exit.map(|e| e.reason);
    assert_eq!(reason, Some(ExitReason::OomKilled));

    let (_t, h, _c) = f.session().await;
    h.kill().await.expect("kill");
    wait_state(&h, SessionState::Ended).await;
    let reason = h.info().await.expect("session info").exit.map(|e| e.reason);
    assert_eq!(reason, Some(ExitReason::Killed));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_draining_its_queue_is_detached_and_the_session_goes_on() {
    let f = fixture(|c| {
        c.client_queue = 2;
        c.slow_client_timeout = Duration::from_secs(10);
    });
    let (_t, h, c) = f.session().await;
    let a = attach(&h, 0).await;
    for i in 0..5u8 {
        f.fake.push(&c.id, frame(Kind::Data, true, &[i])).await;
    }
    // The client never reads `a.rx`.
    let closed = tokio::time::timeout(Duration::from_secs(60), a.closed).await;
    assert_eq!(
        closed
            .expect("closed within a minute")
            .expect("close reason"),
        CloseReason::SlowClient
    );
    let info = h.info().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.state, SessionState::Running);
    assert!(!info.attached);
    assert_eq!(info.pending_messages, 5, "nothing was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_transient_session_without_a_client_is_killed_after_the_grace_period() {
    let f = fixture(|c| c.transient_grace = Duration::from_secs(30));
    let (_t, transient, _c) = f.session_of_kind(true).await;
    let (_t, persistent, _c) = f.session_of_kind(false).await;
    let a = attach(&transient, 0).await;
    // Attached: the grace period does not run.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        transient.info().await.expect("session info").state,
        SessionState::Running
    );
    transient
        .client_event(a.client, ClientEvent::Gone)
        .await
        .expect("client gone");
    tokio::time::sleep(Duration::from_secs(31)).await;
    wait_state(&transient, SessionState::Ended).await;
    let reason = transient
        .info()
        .await
        .expect("session info")
        .exit
        .map(|e| e.reason);
    assert_eq!(reason, Some(ExitReason::Abandoned));
    assert_eq!(
        persistent.info().await.expect("session info").state,
        SessionState::Running
    );
}

#[tokio::test(start_paused = true)]
async fn output_past_the_unspooled_bound_waits_briefly_for_acks_before_it_is_spooled() {
    // Messages are 30 bytes and cost 30 + ENTRY_OVERHEAD; the bound holds
    // three of them, not four.
    let cost = 30 + ENTRY_OVERHEAD as u64;
    let f = fixture(|c| c.output_memory_window = 3 * cost + cost / 2);
    let (_t, h, c) = f.session().await;
    let spooled = || async {
        h.info()
            .await
            .map(|i| i.spooled_bytes)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let push = |n: u8| f.fake.push(&c.id, frame(Kind::Data, true, &[n; 30]));
    let mut a = attach(&h, 0).await;
    for n in 1..=4 {
        push(n).await;
    }
    for seq in 1..=3 {
        assert_eq!(output(next(&mut a).await).0, seq);
    }
    // The client lags for less than the grace: the fourth message would
    // pass the bound, so it waits, and nothing goes to disk.
    tokio::time::sleep(super::actor::SPILL_GRACE / 2).await;
    assert!(a.rx.try_recv().is_err(), "the fourth waits for an ack");
    assert_eq!(spooled().await, 0);
    h.client_event(a.client, ClientEvent::Ack(3))
        .await
        .expect("ack");
    assert_eq!(
        output(next(&mut a).await),
        (4, Stream::Data, Bytes::from(vec![4u8; 30]))
    );
    assert_eq!(spooled().await, 0, "acked in memory, never spooled");

    // A client that stays behind: once the grace is over, the oldest
    // unacknowledged output is spooled and the stream goes on.
    for n in 5..=7 {
        push(n).await;
    }
    for seq in 5..=7 {
        assert_eq!(output(next(&mut a).await).0, seq);
    }
    assert_eq!(spooled().await, 30, "message 4 went to the spool");

    // An ack that makes room for one more message, but leaves the client
    // behind: the next message past the bound does not wait again, so a
    // slow client does not hold the function to its pace.
    h.client_event(a.client, ClientEvent::Ack(5))
        .await
        .expect("ack");
    let before = tokio::time::Instant::now();
    push(8).await;
    push(9).await;
    assert_eq!(output(next(&mut a).await).0, 8);
    assert_eq!(output(next(&mut a).await).0, 9);
    assert!(before.elapsed() < super::actor::SPILL_GRACE);
    assert_eq!(spooled().await, 30, "message 6 is on disk (4 was acked)");
}

/// Pushes one CREDIT frame claiming `consumed` inputs.
async fn credit(f: &Fixture, c: &FakeContainer, consumed: u64) {
    f.fake
        .push(&c.id, frame(Kind::Credit, false, &consumed.to_be_bytes()))
        .await;
}

async fn protocol_error(h: &SessionHandle) -> String {
    wait_state(h, SessionState::Ended).await;
    match h.info().await.expect("session info").exit.map(|e| e.reason) {
        Some(ExitReason::ProtocolError { message }) => message,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forged_credit_ends_that_session_alone() {
    let f = fixture(|_| {});
    let (_t, other, oc) = f.session().await;
    // Ahead of what was written: 2^64-1 inputs consumed, none written.
    let (_t, h, c) = f.session().await;
    credit(&f, &c, u64::MAX).await;
    let message = protocol_error(&h).await;
    assert!(message.contains("only 0 were written"), "{message}");
    // Backwards: one input written and credited, then a smaller count.
    let (_t, h2, mut c2) = f.session().await;
    let a = attach(&h2, 0).await;
    let one = InputItem {
        client: a.client,
        seq: 1,
        bytes: Some(Bytes::from_static(b"x")),
    };
    a.input.send(one).await.expect("send input");
    let mut buf = [0u8; 9];
    c2.stdin.read_exact(&mut buf).await.expect("read stdin");
    credit(&f, &c2, 1).await;
    credit(&f, &c2, 0).await;
    let message = protocol_error(&h2).await;
    assert!(message.contains("backwards"), "{message}");
    // The other session never noticed.
    f.fake
        .push(&oc.id, frame(Kind::Data, true, b"still here"))
        .await;
    let mut o = attach(&other, 0).await;
    assert_eq!(
        output(next(&mut o).await).2,
        Bytes::from_static(b"still here")
    );
    assert_eq!(
        other.info().await.expect("session info").state,
        SessionState::Running
    );
}

#[tokio::test]
async fn empty_messages_count_against_the_cap_and_the_message_bound() {
    // Empty messages cost their overhead: ten fit under this cap.
    let f = fixture(|c| c.output_cap = 10 * ENTRY_OVERHEAD as u64);
    let (_t, h, c) = f.session().await;
    let fake = f.fake.clone();
    let id = c.id.clone();
    let pusher = tokio::spawn(async move {
        for _ in 0..100 {
            fake.push(&id, frame(Kind::Data, true, b"")).await;
        }
    });
    let mut held = 0;
    for _ in 0..200 {
        held = h.info().await.map(|i| i.pending_messages).unwrap_or(0);
        if held >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(held, 10, "the cap holds empty messages too");
    // Reading stopped there: the pusher is blocked, nothing more arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.info().await.expect("session info").pending_messages, 10);
    assert!(!pusher.is_finished());
    pusher.abort();

    // The message bound, with a cap that bytes alone would not reach.
    let f = fixture(|c| c.output_max_messages = 5);
    let (_t, h, c) = f.session().await;
    let fake = f.fake.clone();
    let id = c.id.clone();
    let pusher = tokio::spawn(async move {
        for _ in 0..100 {
            fake.push(&id, frame(Kind::Stdout, true, b"x")).await;
        }
    });
    let mut a = attach(&h, 0).await;
    for seq in 1..=5 {
        assert_eq!(output(next(&mut a).await).0, seq);
    }
    let sixth = tokio::time::timeout(Duration::from_millis(200), a.rx.recv()).await;
    assert!(
        sixth.is_err(),
        "nothing past the message bound until an ack"
    );
    h.client_event(a.client, ClientEvent::Ack(5))
        .await
        .expect("ack");
    assert_eq!(output(next(&mut a).await).0, 6);
    pusher.abort();
}

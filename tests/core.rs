//! The core behaviours, end to end: real controller, real Docker, real client.

mod kit;

use bento::client::{AttachEnd, AttachOptions, Event};
use bento::wire::api::{CloseReason, CreateSession, ExitReason, SessionState};
use kit::{receive, TestServer};

const ECHO: &str = r#"
def main(greeting):
    send(greeting)
    while True:
        m = recv()
        if m is None or m == b"stop":
            break
        send(b"echo " + m)
    print("bye")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_runs_and_is_reaped() {
    let s = TestServer::start().await;
    let f = s
        .submit("def main(name):\n    print('printing')\n    return 'hello ' + name\n")
        .await;
    let (token, id) = s.session(&f, &["world"]).await;
    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    assert_eq!(r.data_strings(), vec!["hello world"]);
    assert_eq!(r.stdout, b"printing\n");
    assert_eq!(r.exit.as_ref().map(|e| e.code), Some(0));
    assert!(matches!(r.end, Some(AttachEnd::Finished)), "{:?}", r.end);
    s.wait_reaped(&token).await;
    assert_eq!(s.containers(&id).await, 0, "container must be removed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_until_stop_word() {
    let s = TestServer::start().await;
    let f = s.submit(ECHO).await;
    let (token, _) = s.session(&f, &["\"hi\""]).await;
    let mut att = s.attach(&token, 0).await;
    let input = att.input();
    for line in ["one", "two", "three", "stop", "never"] {
        if let Err(e) = input.send(line.as_bytes().to_vec()).await {
            panic!("send input: {e}");
        }
    }
    let r = receive(&mut att, |_| false).await;
    assert_eq!(
        r.data_strings(),
        vec!["hi", "echo one", "echo two", "echo three"]
    );
    assert_eq!(r.stdout, b"bye\n");
    assert_eq!(
        r.exit.map(|e| e.reason),
        Some(ExitReason::Exited { code: 0 })
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_and_reattach_loses_nothing() {
    let s = TestServer::start().await;
    let f = s
        .submit("import time\ndef main(n):\n    for i in range(n):\n        send(str(i))\n        time.sleep(0.005)\n")
        .await;
    let n = 400;
    let (token, _) = s.session(&f, &[&n.to_string()]).await;

    // First client: read a little, then leave.
    let mut a = s.attach(&token, 0).await;
    let first = receive(&mut a, |r| r.data.len() >= 20).await;
    a.detach().await;
    // Let the function produce while nobody is attached.
    s.wait_session(&token, "output buffered while detached", |i| {
        !i.attached && i.pending_messages > 5
    })
    .await;

    // Second client resumes after the last message the first one holds.
    let mut b = s.attach(&token, first.last_seq).await;
    let second = receive(&mut b, |_| false).await;
    let all: Vec<String> = first
        .data_strings()
        .into_iter()
        .chain(second.data_strings())
        .collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(all, want, "every message exactly once, in order");
    assert_eq!(second.exit.map(|e| e.code), Some(0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_of_a_function_that_ended_detached_is_delivered_then_reaped() {
    let s = TestServer::start().await;
    let f = s
        .submit("import sys\nfor i in range(50):\n    send(f'm{i}')\nprint('out')\nsys.stderr.write('err\\n')\nsys.exit(3)\n")
        .await;
    let (token, id) = s.session(&f, &[]).await;
    let info = s
        .wait_session(&token, "function ended", |i| i.state == SessionState::Ended)
        .await;
    assert_eq!(info.pending_messages, 53, "50 data, stdout, stderr, exit");
    assert_eq!(s.containers(&id).await, 1, "kept until output is delivered");

    let mut att = s.attach(&token, 0).await;
    let r = receive(&mut att, |_| false).await;
    let want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(r.data_strings(), want);
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(
        r.exit.map(|e| e.reason),
        Some(ExitReason::Exited { code: 3 })
    );
    s.wait_reaped(&token).await;
    assert_eq!(s.containers(&id).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_syntax_errors_exit_1_with_a_traceback() {
    let s = TestServer::start().await;
    for (code, expect) in [
        (
            "def main():\n    raise ValueError('boom')\n",
            "ValueError: boom",
        ),
        // Code that does not compile is refused at submit (tests/authoring.rs);
        // one compiled at run time still fails the run like any exception.
        ("exec('def main(:')\n", "SyntaxError"),
    ] {
        let f = s.submit(code).await;
        let (token, _) = s.session(&f, &[]).await;
        let mut att = s.attach(&token, 0).await;
        let r = receive(&mut att, |_| false).await;
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(expect), "stderr {err:?} lacks {expect:?}");
        assert_eq!(
            r.exit.map(|e| e.reason),
            Some(ExitReason::Exited { code: 1 })
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_detaches_and_kill_stops() {
    let s = TestServer::start().await;
    let f = s
        .submit("import time\nsend('up')\nwhile True:\n    time.sleep(1)\n")
        .await;
    let (token, id) = s.session(&f, &[]).await;
    let mut a = s.attach(&token, 0).await;
    let first = receive(&mut a, |r| !r.data.is_empty()).await;
    assert_eq!(first.data_strings(), vec!["up"]);

    if let Err(e) = s.client.close_session(&token).await {
        panic!("close: {e}");
    }
    let r = receive(&mut a, |_| false).await;
    assert!(
        matches!(r.end, Some(AttachEnd::Closed(CloseReason::ClosedByUser))),
        "{:?}",
        r.end
    );
    let info = s.wait_session(&token, "detached", |i| !i.attached).await;
    assert_eq!(
        info.state,
        SessionState::Running,
        "close must not stop the function"
    );

    if let Err(e) = s.client.kill_session(&token).await {
        panic!("kill: {e}");
    }
    let mut b = s.attach(&token, first.last_seq).await;
    let r = receive(&mut b, |_| false).await;
    assert_eq!(
        r.exit.as_ref().map(|e| &e.reason),
        Some(&ExitReason::Killed)
    );
    assert_eq!(r.exit.map(|e| e.code), Some(137));
    s.wait_reaped(&token).await;
    assert_eq!(s.containers(&id).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_and_unknown_function_are_clear_errors() {
    let s = TestServer::start().await;
    let e = s.client.session("0123456789abcdef").await.err();
    assert!(e.as_ref().is_some_and(|e| e.is_not_found()), "{e:?}");
    let e = s
        .client
        .attach("0123456789abcdef", AttachOptions::default())
        .await
        .err();
    assert!(e.as_ref().is_some_and(|e| e.is_not_found()), "{e:?}");
    let body = CreateSession {
        function: "no-such-function".into(),
        args: vec![],
        transient: false,
        limits: Default::default(),
        forkable: None,
        env: Default::default(),
        secrets: Vec::new(),
    };
    let e = s.client.create_session(&body).await.err();
    assert!(e.as_ref().is_some_and(|e| e.is_not_found()), "{e:?}");
    assert!(e
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("no-such-function"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attach_takes_the_session_over() {
    let s = TestServer::start().await;
    let f = s.submit(ECHO).await;
    let (token, _) = s.session(&f, &["\"hi\""]).await;
    let mut a = s.attach(&token, 0).await;
    let first = receive(&mut a, |r| !r.data.is_empty()).await;
    assert_eq!(first.data_strings(), vec!["hi"]);

    let mut b = s.attach(&token, first.last_seq).await;
    let ra = receive(&mut a, |_| false).await;
    assert!(
        matches!(ra.end, Some(AttachEnd::Closed(CloseReason::TakenOver))),
        "{:?}",
        ra.end
    );
    let input = b.input();
    for line in ["x", "stop"] {
        if let Err(e) = input.send(line.as_bytes().to_vec()).await {
            panic!("send: {e}");
        }
    }
    let rb = receive(&mut b, |_| false).await;
    assert_eq!(rb.data_strings(), vec!["echo x"]);
    assert_eq!(rb.exit.map(|e| e.code), Some(0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_message_arrives_intact() {
    let s = TestServer::start().await;
    let f = s
        .submit("block = bytes(range(256)) * 4096\nsend(block * 100)\nsend('after')\n")
        .await;
    let (token, _) = s.session(&f, &[]).await;
    let mut att = s.attach(&token, 0).await;
    // Check chunk by chunk rather than keeping 100 MB around twice.
    let mut len = 0usize;
    let mut ok = true;
    let mut messages = Vec::new();
    let mut exit = None;
    while let Some(ev) = att.next().await {
        match ev {
            Event::Output(f) => {
                ok &= f
                    .bytes
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == ((len + i) % 256) as u8)
                    || messages.len() == 1;
                if messages.is_empty() {
                    len += f.bytes.len();
                    assert!(f.bytes.len() <= 1 << 20, "chunks stay small");
                    if f.end {
                        messages.push(len);
                    }
                } else if f.end {
                    messages.push(f.bytes.len());
                }
                att.written(f.seq);
            }
            Event::Exit { seq, exit: e } => {
                exit = Some(e);
                att.written(seq);
            }
            Event::Ended(_) => break,
            _ => {}
        }
    }
    assert_eq!(
        messages,
        vec![100 * 1024 * 1024, 5],
        "one 100 MiB message, then 'after'"
    );
    assert!(ok, "content intact");
    assert_eq!(exit.map(|e| e.code), Some(0));
    s.stop().await;
}

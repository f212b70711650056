//! Lease-style timeouts against the real Docker engine (docs/leases.md):
//! the idle timeout and what holds it off, `bento extend` and its
//! maximum, the `deadline` warning to an attached client, and the SIGTERM
//! a function can catch before the kill that follows its grace.

mod kit;

use std::time::Duration;

use bento::client::{Client, Event};
use bento::config::Config;
use bento::wire::api::{
    CreateSession, DeadlineKind, ExitReason, LimitsRequest, SessionInfo, SessionState, Stream,
};
use kit::cli_output as bento;
use kit::controller::Controller;
use kit::{err, expect_code, out, TestServer};
use tokio::time::Instant;

/// Silent until killed (the driver's own SIGTERM handler ends it).
const SILENT: &str = "import time\ndef main():\n    time.sleep(600)\n";

/// Prints every 0.3 s for `secs` seconds, then returns.
const CHATTY: &str = "import time\ndef main(secs):\n    end = time.time() + secs\n    \
                      while time.time() < end:\n        print('tick', flush=True)\n        \
                      time.sleep(0.3)\n";

/// Sleeps `secs` seconds, then says so.
const SLEEPER: &str = "import time\ndef main(secs):\n    time.sleep(secs)\n    return 'survived'\n";

/// Catches SIGTERM to "save its work", and goes on until the kill.
const SAVER: &str = "import signal, time\n\
def on_term(signum, frame):\n    print('caught SIGTERM, saving', flush=True)\n    send('saved')\n\
def main():\n    signal.signal(signal.SIGTERM, on_term)\n    send('ready')\n    \
while True:\n        time.sleep(0.1)\n";

/// The controller these tests share the settings of: a short warning and
/// grace, so that a stop is seen within seconds.
async fn server(warning: Duration, grace: Duration) -> TestServer {
    TestServer::start_with(move |c: &mut Config| {
        c.deadline_warning = warning;
        for image in c.images.values_mut() {
            image.stop_grace = grace;
        }
    })
    .await
}

/// Starts `function` with `args` and the limits asked for; the token.
async fn start(c: &Client, function: &str, args: &[&str], limits: LimitsRequest) -> String {
    let created = c
        .create_session(&CreateSession {
            function: function.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            limits,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    created.token
}

fn idle(secs: u64) -> LimitsRequest {
    LimitsRequest {
        idle_timeout: Some(Duration::from_secs(secs)),
        ..Default::default()
    }
}

fn timeout(secs: u64) -> LimitsRequest {
    LimitsRequest {
        timeout: Some(Duration::from_secs(secs)),
        ..Default::default()
    }
}

async fn ended(s: &TestServer, token: &str) -> SessionInfo {
    s.wait_session(token, "the end", |i| i.state == SessionState::Ended)
        .await
}

fn reason(i: &SessionInfo) -> Option<ExitReason> {
    i.exit.as_ref().map(|e| e.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ends_a_detached_silent_session_but_not_one_with_output_or_a_client() {
    let s = server(Duration::from_secs(30), Duration::from_secs(3)).await;
    let c = &s.client;
    let silent = s.submit(SILENT).await;
    let chatty = s.submit(CHATTY).await;
    let sleeper = s.submit(SLEEPER).await;

    // The counters are the process's, shared with the other tests here:
    // each test looks for its own increase.
    let idle_stops = "bento_lease_stops_total{reason=\"idle\"}";
    let stops_before = kit::metric(&s.url, idle_stops).await;
    let quiet = start(c, &silent, &[], idle(2)).await;
    let talking = start(c, &chatty, &["5"], idle(2)).await;
    let watched = start(c, &sleeper, &["5"], idle(2)).await;
    let started = Instant::now();
    // The attached client holds the idle timeout off for as long as it is
    // attached: it reads everything, to the exit.
    let watching = {
        let c = c.clone();
        let token = watched.clone();
        tokio::spawn(async move {
            let mut att = kit::client::try_attach(&c, &token, 0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            kit::client::receive(&mut att, |_| false).await
        })
    };

    // While it waits, inspect says when idle would end it.
    let info = s.info(&quiet).await;
    let idle_at = info.idle_deadline.expect("an idle deadline while detached");
    assert!(
        idle_at <= info.created_at + 4,
        "{idle_at} vs {}",
        info.created_at
    );
    assert_eq!(
        info.limits.map(|l| l.idle_timeout),
        Some(Duration::from_secs(2))
    );

    let quiet_end = ended(&s, &quiet).await;
    let idle_after = started.elapsed();
    assert_eq!(reason(&quiet_end), Some(ExitReason::Idle { after: 2 }));
    let message = quiet_end.exit.map(|e| e.message).unwrap_or_default();
    assert_eq!(message, "idle for 2s: no client attached and no output");
    assert!(kit::metric(&s.url, idle_stops).await >= stops_before + 1.0);
    // Ended by its own SIGTERM handler, well within the grace.
    assert!(
        idle_after < Duration::from_secs(2 + 3),
        "idle took {idle_after:?}"
    );
    // A client attaching now is told why it ended.
    let mut att = kit::client::try_attach(c, &quiet, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = kit::client::receive(&mut att, |_| false).await;
    assert_eq!(
        got.exit.map(|e| e.reason),
        Some(ExitReason::Idle { after: 2 })
    );

    let talking_end = ended(&s, &talking).await;
    assert_eq!(reason(&talking_end), Some(ExitReason::Exited { code: 0 }));
    let watched_got = watching.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(watched_got.data_strings(), ["survived"]);
    assert_eq!(
        watched_got.exit.map(|e| e.reason),
        Some(ExitReason::Exited { code: 0 })
    );
    eprintln!("idle: a silent session ended {idle_after:?} after it started (idle_timeout 2s)");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_moves_the_deadline_within_the_images_maximum() {
    let s = server(Duration::from_secs(30), Duration::from_secs(3)).await;
    let f = s.submit(SLEEPER).await;
    let run = bento(&s.url, &["run", "-d", &f, "6", "--timeout", "3s"]).await;
    expect_code(&run, 0, "run -d");
    let token = out(&run).trim().to_string();
    let before = s.info(&token).await;
    let first = before.deadline.expect("a deadline");
    assert_eq!(first, before.created_at + 3);

    let extends_before = kit::metric(&s.url, "bento_session_extends_total").await;
    let extended = bento(&s.url, &["extend", &token, "30s"]).await;
    expect_code(&extended, 0, "extend");
    assert!(kit::metric(&s.url, "bento_session_extends_total").await >= extends_before + 1.0);
    assert!(
        out(&extended).starts_with("deadline "),
        "{}",
        out(&extended)
    );
    let after = s.info(&token).await;
    assert_eq!(after.deadline, Some(first + 30), "inspect shows it");
    let inspect = bento(&s.url, &["inspect", &token]).await;
    assert!(out(&inspect).contains("deadline"), "{}", out(&inspect));

    // Past the image's maximum (24h from the start): refused, naming it.
    let refused = bento(&s.url, &["extend", &token, "30d"]).await;
    expect_code(&refused, 1, "extend past the maximum");
    assert!(
        err(&refused).contains("past the image's maximum timeout of 1d"),
        "{}",
        err(&refused)
    );
    assert_eq!(s.info(&token).await.deadline, Some(first + 30));

    // It outlives its first timeout, and ends by itself.
    let end = ended(&s, &token).await;
    assert_eq!(reason(&end), Some(ExitReason::Exited { code: 0 }));
    assert!(
        end.ended_at.unwrap_or_default() >= first + 2,
        "{end:?} vs {first}"
    );
    // An ended session's deadline does not move.
    let late = s.client.extend(&token, Duration::from_secs(30)).await;
    let status = late.err().and_then(|e| e.status());
    assert_eq!(status, Some(409));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_client_is_warned_and_the_function_catches_sigterm_before_the_kill() {
    let (warning, grace) = (Duration::from_secs(2), Duration::from_secs(2));
    let s = server(warning, grace).await;
    let f = s.submit(SAVER).await;
    let stops = "bento_lease_stops_total{reason=\"timeout\"}";
    let (stops_before, kills_before) = (
        kit::metric(&s.url, stops).await,
        kit::metric(&s.url, "bento_lease_kills_total").await,
    );
    let token = start(&s.client, &f, &[], timeout(4)).await;
    let mut att = s.attach(&token, 0).await;
    let mut seen: Vec<String> = Vec::new();
    let mut times = Vec::new();
    let t0 = Instant::now();
    let within = t0 + Duration::from_secs(60);
    let exit = loop {
        let ev = match tokio::time::timeout_at(within, att.next()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("no exit; saw {seen:?}"),
            Err(_) => panic!("timed out; saw {seen:?}"),
        };
        match ev {
            Event::Deadline {
                reason, in_secs, ..
            } => {
                assert_eq!(reason, DeadlineKind::Timeout);
                assert!(in_secs <= 3, "{in_secs}");
                seen.push("deadline".into());
                times.push(("deadline", t0.elapsed()));
            }
            Event::Output(o) => {
                let text = String::from_utf8_lossy(&o.bytes).trim().to_string();
                if o.stream != Stream::Stderr {
                    times.push(("output", t0.elapsed()));
                    seen.push(text);
                }
                att.written(o.seq);
            }
            Event::Exit { seq, exit } => {
                att.written(seq);
                times.push(("exit", t0.elapsed()));
                break exit;
            }
            Event::Ended(end) => panic!("ended without an exit: {end:?}; saw {seen:?}"),
            _ => {}
        }
    };
    assert_eq!(
        seen,
        ["ready", "deadline", "caught SIGTERM, saving", "saved"],
        "{times:?}"
    );
    assert_eq!(exit.reason, ExitReason::Timeout);
    assert_eq!(exit.code, 124);
    // Killed after the grace, not at the SIGTERM: its handler returned and
    // it went on. Measured from the handler's line, not from the attach:
    // a slow container start moves the attach, never the gap. The line
    // can only arrive late, which makes the gap shorter: hence the margin.
    let caught = times
        .iter()
        .filter(|(w, _)| *w == "output")
        .nth(1)
        .map(|t| t.1);
    let caught = caught.unwrap_or_else(|| panic!("no line from the handler: {times:?}"));
    let last = times.last().map(|t| t.1).unwrap_or_default();
    eprintln!("deadline: {times:?} (timeout 4s, warning 2s, grace 2s)");
    assert!(
        last.saturating_sub(caught) >= grace - Duration::from_millis(500),
        "{times:?}"
    );
    // Stopped at its deadline, then killed when the grace was over.
    assert!(kit::metric(&s.url, stops).await >= stops_before + 1.0);
    assert!(kit::metric(&s.url, "bento_lease_kills_total").await >= kills_before + 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_when_the_session_ends_and_how_to_extend_it() {
    let s = server(Duration::from_secs(2), Duration::from_secs(1)).await;
    let f = s.submit(SILENT).await;
    let run = bento(&s.url, &["run", &f, "--timeout", "3s"]).await;
    expect_code(&run, 124, "run to its timeout");
    let stderr = err(&run);
    assert!(
        stderr.contains("bento: the session ends in ")
            && stderr.contains(" (timeout); extend with: bento extend "),
        "{stderr}"
    );
    assert!(stderr.contains("timed out"), "{stderr}");
    s.stop().await;
}

/// The moved deadline is in the sessions table: a controller killed and
/// started again keeps to it, rather than to the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_deadline_survives_a_controller_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut ctl = Controller::with_config(dir.path(), 0, "deadline_warning: 30s\n").await;
    ctl.start().await;
    let c = kit::client::client(&ctl.url());
    let f = kit::client::submit(&c, SLEEPER).await;
    // Without the extend it would be stopped at 4 s, before it returns.
    let token = start(&c, &f, &["7"], timeout(4)).await;
    let first = c
        .session(&token)
        .await
        .ok()
        .and_then(|i| i.deadline)
        .unwrap_or_else(|| panic!("a deadline"));
    let moved = c
        .extend(&token, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("extend: {e}"));
    assert_eq!(moved.deadline, first + 10);
    ctl.kill();
    ctl.start().await;
    let back = kit::client::wait_session(&c, &token, "resumed", Duration::from_secs(60), |i| {
        i.state != SessionState::Resuming
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.deadline, Some(first + 10), "the row kept it");
    let end = kit::client::wait_session(&c, &token, "the end", Duration::from_secs(60), |i| {
        i.state == SessionState::Ended
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reason(&end), Some(ExitReason::Exited { code: 0 }));
    ctl.stop();
}

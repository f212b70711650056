//! A session's lease against the fake runtime: the warning to the
//! attached client, the SIGTERM at the deadline and the kill after the
//! grace, a kill within the grace, the idle timeout and what holds it off,
//! and an extend that the store keeps.

use std::time::Duration;

use super::tests::{attach, fixture, next, wait_state, Fixture};
use super::ToClient;
use crate::runtime::fake::frame;
use crate::wire::api::{DeadlineKind, ExitReason, ServerMsg, SessionState};
use crate::wire::driver::Kind;

/// Sessions of the image get `timeout` and `idle`, and a grace of 5 s;
/// attached clients are warned 3 s before the deadline.
fn lease_fixture(timeout: u64, idle: u64) -> Fixture {
    fixture(|c| {
        c.deadline_warning = Duration::from_secs(3);
        if let Some(image) = c.images.get_mut("python") {
            image.limits.timeout = Duration::from_secs(timeout);
            image.limits.idle_timeout = Duration::from_secs(idle);
            image.stop_grace = Duration::from_secs(5);
        }
    })
}

fn sigterms(f: &Fixture, id: &str) -> usize {
    let sent = f.fake.signals();
    sent.iter()
        .filter(|(c, s)| c == id && s == "SIGTERM")
        .count()
}

async fn reason(h: &super::SessionHandle) -> Option<ExitReason> {
    let info = h.info().await.unwrap_or_else(|e| panic!("{e}"));
    info.exit.map(|e| e.reason)
}

#[tokio::test(start_paused = true)]
async fn the_client_is_warned_then_the_function_gets_sigterm_and_the_kill_after_the_grace() {
    let f = lease_fixture(10, 0);
    let (_t, h, c) = f.session().await;
    let mut a = attach(&h, 0).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(a.rx.try_recv().is_err(), "no warning yet");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match next(&mut a).await {
        ToClient::Msg(ServerMsg::Deadline {
            reason, in_secs, ..
        }) => {
            assert_eq!(reason, DeadlineKind::Timeout);
            assert!((2..=3).contains(&in_secs), "{in_secs}");
        }
        other => panic!("expected the warning, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sigterms(&f, &c.id), 1, "SIGTERM at the deadline");
    assert!(f.fake.killed().is_empty(), "not killed yet: the grace");
    assert_eq!(
        h.info().await.map(|i| i.state).ok(),
        Some(SessionState::Running)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_state(&h, SessionState::Ended).await;
    assert_eq!(
        f.fake.killed(),
        vec![c.id.clone()],
        "killed after the grace"
    );
    assert_eq!(reason(&h).await, Some(ExitReason::Timeout));
}

#[tokio::test(start_paused = true)]
async fn a_kill_within_the_grace_is_at_once_and_the_timeout_stays_the_reason() {
    let f = lease_fixture(10, 0);
    let (_t, h, c) = f.session().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(sigterms(&f, &c.id), 1);
    h.kill().await.unwrap_or_else(|e| panic!("{e}"));
    wait_state(&h, SessionState::Ended).await;
    assert_eq!(f.fake.killed(), vec![c.id.clone()]);
    assert_eq!(reason(&h).await, Some(ExitReason::Timeout));
}

#[tokio::test(start_paused = true)]
async fn idle_is_held_off_by_output_and_a_client_and_ends_with_its_own_reason() {
    let f = lease_fixture(3600, 60);
    let (_t, h, c) = f.session().await;
    let idle_at = h.info().await.ok().and_then(|i| i.idle_deadline);
    assert!(idle_at.is_some(), "detached: an idle deadline is shown");
    tokio::time::sleep(Duration::from_secs(40)).await;
    f.fake.push(&c.id, frame(Kind::Data, true, b"alive")).await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(sigterms(&f, &c.id), 0, "output 40 s ago holds it off");
    let a = attach(&h, 0).await;
    assert_eq!(
        h.info().await.ok().and_then(|i| i.idle_deadline),
        None,
        "attached: none"
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(sigterms(&f, &c.id), 0, "a client holds it off");
    h.client_event(a.client, super::ClientEvent::Gone)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(sigterms(&f, &c.id), 1, "idle since the client left");
    // The function ends by itself within the grace: no kill needed.
    f.fake.exit(&c.id, 143, false);
    wait_state(&h, SessionState::Ended).await;
    assert!(f.fake.killed().is_empty());
    assert_eq!(reason(&h).await, Some(ExitReason::Idle { after: 60 }));
}

#[tokio::test]
async fn an_extend_is_kept_in_the_store_and_refused_past_the_maximum_or_the_end() {
    let f = lease_fixture(60, 0);
    let (token, h, c) = f.session().await;
    let first = h.info().await.ok().and_then(|i| i.deadline);
    let first = first.unwrap_or_else(|| panic!("a deadline"));
    let moved = h.extend(Duration::from_secs(30), Some(first + 60)).await;
    assert_eq!(moved.ok(), Some(Ok(first + 30)));
    let row = f.launcher.ctx.store.session(&token);
    let row = row.ok().flatten().unwrap_or_else(|| panic!("a row"));
    assert_eq!(
        row.record.deadline,
        Some(first + 30),
        "what a restart reads"
    );
    let too_far = h.extend(Duration::from_secs(31), Some(first + 60)).await;
    assert_eq!(
        too_far.ok(),
        Some(Err(super::ExtendRefused::BeyondMax {
            asked: first + 61,
            max: first + 60
        }))
    );
    f.fake.exit(&c.id, 0, false);
    wait_state(&h, SessionState::Ended).await;
    let late = h.extend(Duration::from_secs(1), None).await;
    assert_eq!(late.ok(), Some(Err(super::ExtendRefused::Ended)));
}

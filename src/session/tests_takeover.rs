//! Takeovers in the actor, against the fake runtime: the new client starts
//! after the old client's final ack, or after a deadline if it is silent.

use std::sync::atomic::Ordering;
use tokio::time::Instant;

use super::actor::TAKEOVER_GRACE;
use super::tests::{attach, fixture, next, output};
use super::{ClientEvent, SessionHandle, ToClient};
use crate::metrics::METRICS;
use crate::runtime::fake::frame;
use crate::wire::api::{CloseReason, ServerMsg};
use crate::wire::driver::Kind;

fn unconfirmed() -> u64 {
    METRICS.takeovers_unconfirmed.load(Ordering::Relaxed)
}

async fn last_seq(h: &SessionHandle) -> u64 {
    h.info()
        .await
        .map(|i| i.last_seq)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Skips input acks: these tests look at output.
async fn next_output(a: &mut super::Attached) -> u64 {
    loop {
        match next(a).await {
            ToClient::Msg(ServerMsg::InputAck { .. }) => continue,
            m => return output(m).0,
        }
    }
}

#[tokio::test]
async fn a_takeover_waits_for_the_old_clients_final_ack_so_nothing_it_wrote_comes_again() {
    let f = fixture(|_| {});
    let (_t, h, c) = f.session().await;
    for n in 1..=5u8 {
        f.fake.push(&c.id, frame(Kind::Data, true, &[n])).await;
    }
    let mut a = attach(&h, 0).await;
    for seq in 1..=5 {
        assert_eq!(next_output(&mut a).await, seq);
    }
    // Acks are batched: the old client has written out more than it acked.
    h.client_event(a.client, ClientEvent::Ack(2))
        .await
        .expect("ack");

    let started = Instant::now();
    let h2 = h.clone();
    let b = tokio::spawn(async move { attach(&h2, 0).await });
    (&mut a.replaced).await.expect("the old client is told");
    // The session goes on while it waits: output is taken in and info
    // answered, but the new client has no answer yet, and the old one is
    // sent nothing more.
    f.fake.push(&c.id, frame(Kind::Data, true, &[6])).await;
    while last_seq(&h).await < 6 {
        tokio::task::yield_now().await;
    }
    assert!(!b.is_finished(), "the new attach waits for the old client");
    assert!(a.rx.try_recv().is_err(), "nothing more to the old client");

    // Its final ack, then its detach.
    h.client_event(a.client, ClientEvent::Ack(5))
        .await
        .expect("ack");
    h.client_event(a.client, ClientEvent::Detached)
        .await
        .expect("detach");
    let mut b = match b.await {
        Ok(b) => b,
        Err(e) => panic!("attach task: {e}"),
    };
    assert!(
        started.elapsed() < TAKEOVER_GRACE,
        "released by the detach, not by the deadline"
    );
    assert!(matches!(b.hello, ServerMsg::Hello { last_seq: 6, .. }));
    assert_eq!(next_output(&mut b).await, 6, "1-5 are not sent again");
    assert_eq!(h.info().await.expect("session info").pending_messages, 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_old_client_is_closed_at_the_deadline_and_the_replay_starts_after_its_last_ack() {
    let f = fixture(|_| {});
    let (_t, h, c) = f.session().await;
    for n in 1..=3u8 {
        f.fake.push(&c.id, frame(Kind::Data, true, &[n])).await;
    }
    let mut a = attach(&h, 0).await;
    for seq in 1..=3 {
        assert_eq!(next_output(&mut a).await, seq);
    }
    h.client_event(a.client, ClientEvent::Ack(1))
        .await
        .expect("ack");
    let before = unconfirmed();

    let started = Instant::now();
    let h2 = h.clone();
    let b = tokio::spawn(async move { attach(&h2, 0).await });
    (&mut a.replaced).await.expect("told it is replaced");
    // The old client never answers (the clock runs on by itself).
    let mut b = match b.await {
        Ok(b) => b,
        Err(e) => panic!("attach task: {e}"),
    };
    assert!(started.elapsed() >= TAKEOVER_GRACE, "waited the grace out");
    assert_eq!(
        a.closed.await.expect("close reason"),
        CloseReason::TakenOver
    );
    // From its last ack on: 2 and 3 may have been written out by the old
    // client; this is the one case a takeover can repeat, and it counts.
    assert_eq!(next_output(&mut b).await, 2);
    assert_eq!(next_output(&mut b).await, 3);
    assert!(unconfirmed() > before, "counted as unconfirmed");
    // A late word from the replaced client changes nothing.
    h.client_event(a.client, ClientEvent::Ack(3))
        .await
        .expect("ack");
    assert_eq!(h.info().await.expect("session info").pending_messages, 2);
}

#[tokio::test(start_paused = true)]
async fn a_third_attach_during_a_takeover_wins_and_close_cancels_the_waiting_one() {
    let f = fixture(|_| {});
    let (_t, h, _c) = f.session().await;
    let mut a = attach(&h, 0).await;
    let (h2, h3) = (h.clone(), h.clone());
    let b = tokio::spawn(async move { attach(&h2, 0).await });
    (&mut a.replaced).await.expect("told it is replaced");
    let c = tokio::spawn(async move { attach(&h3, 0).await });
    // The one that waited is taken over before it was sent anything.
    let b = match b.await {
        Ok(b) => b,
        Err(e) => panic!("attach task: {e}"),
    };
    assert_eq!(
        b.closed.await.expect("close reason"),
        CloseReason::TakenOver
    );
    // `bento close` now: the waiting attach is closed; the old client
    // still has its chance to leave properly.
    h.close().await.expect("close");
    let c = match c.await {
        Ok(c) => c,
        Err(e) => panic!("attach task: {e}"),
    };
    assert_eq!(
        c.closed.await.expect("close reason"),
        CloseReason::ClosedByUser
    );
    assert!(h.info().await.expect("session info").attached);
    h.client_event(a.client, ClientEvent::Detached)
        .await
        .expect("detach");
    assert!(!h.info().await.expect("session info").attached);
}

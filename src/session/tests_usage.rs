//! Usage and history against the fake runtime: the engine's samples reach
//! `inspect` while the function runs, are fixed in its exit, and are kept
//! in the history record once the session is reaped.

use std::time::Duration;

use super::tests::{attach, fixture, next, wait_state};
use super::{ClientEvent, ToClient};
use crate::runtime::fake::frame;
use crate::runtime::{PeakSource, UsageSample};
use crate::wire::api::{ExitReason, ServerMsg, SessionState};
use crate::wire::driver::Kind;

#[tokio::test]
async fn samples_reach_inspect_the_exit_and_the_history() {
    let f = fixture(|_| {});
    let (token, h, c) = f.session().await;
    f.fake.set_usage(
        &c.id,
        UsageSample {
            cpu_user_ns: 700_000_000,
            cpu_system_ns: 300_000_000,
            memory_bytes: 50 << 20,
            memory_peak: Some((100 << 20, PeakSource::MaxUsage)),
            pids: 4,
        },
    );
    // Live: the first sample is 100 ms after the start.
    let mut live = None;
    for _ in 0..200 {
        live = h.info().await.ok().and_then(|i| i.usage);
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = live.unwrap_or_else(|| panic!("no live usage"));
    assert_eq!((live.cpu_user_ms, live.cpu_system_ms), (700, 300));
    assert_eq!(live.peak_memory_bytes, 100 << 20);
    assert_eq!(live.peak_memory_source, "max_usage");

    f.fake.push(&c.id, frame(Kind::Data, true, b"hello")).await;
    f.fake.exit(&c.id, 0, false);
    wait_state(&h, SessionState::Ended).await;
    let info = h.info().await.unwrap_or_else(|e| panic!("{e}"));
    let exit = info.exit.unwrap_or_else(|| panic!("no exit"));
    let usage = exit
        .usage
        .clone()
        .unwrap_or_else(|| panic!("no usage at exit"));
    assert_eq!((usage.cpu_user_ms, usage.peak_pids), (700, 4));
    assert_eq!(
        info.usage.as_ref(),
        Some(&usage),
        "inspect shows the final figures"
    );

    let mut a = attach(&h, 0).await;
    let _ = next(&mut a).await;
    match next(&mut a).await {
        ToClient::Msg(ServerMsg::Exit { seq, exit }) => {
            assert_eq!(exit.reason, ExitReason::Exited { code: 0 });
            assert_eq!(exit.usage.as_ref(), Some(&usage), "in the exit message");
            let _ = h.client_event(a.client, ClientEvent::Ack(seq)).await;
        }
        other => panic!("expected exit, got {other:?}"),
    }
    let _ = (&mut a.closed).await;
    let _ = h.client_event(a.client, ClientEvent::Gone).await;
    let store = &f.launcher.ctx.store;
    let mut kept = None;
    for _ in 0..500 {
        kept = store.history_one("default", &token).ok().flatten();
        if kept.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = kept.unwrap_or_else(|| panic!("no history record"));
    assert_eq!(kept.usage, Some(usage));
    assert_eq!((kept.bytes_out, kept.messages_out), (5, 1));
    assert_eq!(
        kept.exit.map(|e| e.reason),
        Some(ExitReason::Exited { code: 0 })
    );
    assert!(f.launcher.sessions.get(&token).is_none(), "reaped");
}

//! The lease's times: the deadline and its warning, extend, the idle
//! timeout and the stop's grace. (The actor's use of them is tested
//! through whole sessions in `session::tests_lease` and `tests/leases.rs`.)

use super::*;

const MIN: Duration = Duration::from_secs(60);

fn lease_in(secs: u64, idle: Duration) -> Lease {
    Lease::new(Some(now_secs() + secs), idle, Duration::from_secs(5), false)
}

#[tokio::test(start_paused = true)]
async fn a_client_is_warned_once_per_deadline_within_the_warning() {
    let mut l = lease_in(120, Duration::ZERO);
    let warning = Duration::from_secs(30);
    assert!(l.warning(Some(1), warning).is_none(), "not yet");
    let at = l.warn_at(Some(1), warning).expect("a warning is due later");
    assert!(at > Instant::now() + Duration::from_secs(80));
    assert!(l.warn_at(None, warning).is_none(), "nobody to warn");
    assert!(l.warn_at(Some(1), Duration::ZERO).is_none(), "warnings off");
    tokio::time::advance(Duration::from_secs(95)).await;
    let Some(ServerMsg::Deadline {
        reason, in_secs, ..
    }) = l.warning(Some(1), warning)
    else {
        panic!("the warning is due");
    };
    assert_eq!(reason, DeadlineKind::Timeout);
    assert!((20..=30).contains(&in_secs), "{in_secs}");
    assert!(l.warning(Some(1), warning).is_none(), "once");
    assert!(
        l.warning(Some(2), warning).is_some(),
        "a new client gets its own"
    );
}

#[tokio::test(start_paused = true)]
async fn extend_moves_the_deadline_within_the_maximum() {
    let mut l = lease_in(60, Duration::ZERO);
    let old = l.deadline().unwrap_or_default();
    let (new, msg) = l
        .extend(MIN, Some(old + 120), None, MIN)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(new, old + 60);
    assert!(msg.is_none(), "nobody was warned");
    assert_eq!(l.deadline(), Some(new));
    assert_eq!(
        l.extend(2 * MIN, Some(old + 120), None, MIN),
        Err(ExtendRefused::BeyondMax {
            asked: old + 180,
            max: old + 120
        })
    );
    assert_eq!(l.deadline(), Some(new), "a refused extend changes nothing");
    let mut none = Lease::new(None, Duration::ZERO, Duration::ZERO, false);
    assert_eq!(
        none.extend(MIN, None, None, MIN),
        Err(ExtendRefused::NoDeadline)
    );
}

#[tokio::test(start_paused = true)]
async fn a_warned_client_hears_of_the_new_deadline_and_is_warned_again() {
    let warning = Duration::from_secs(30);
    let mut l = lease_in(20, Duration::ZERO);
    assert!(l.warning(Some(7), warning).is_some());
    let (new, msg) = l
        .extend(10 * MIN, None, Some(7), warning)
        .unwrap_or_else(|e| panic!("{e}"));
    let Some(ServerMsg::Deadline { at, in_secs, .. }) = msg else {
        panic!("told at once");
    };
    assert_eq!(at, new);
    assert!(in_secs > 500, "{in_secs}");
    assert!(l.warning(Some(7), warning).is_none(), "far off again");
    tokio::time::advance(Duration::from_secs(600)).await;
    assert!(l.warning(Some(7), warning).is_some(), "near again");
}

#[tokio::test(start_paused = true)]
async fn an_extend_still_within_the_warning_is_its_warning() {
    let warning = Duration::from_secs(30);
    let mut l = lease_in(10, Duration::ZERO);
    assert!(l.warning(Some(7), warning).is_some());
    let (_, msg) = l
        .extend(Duration::from_secs(5), None, Some(7), warning)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(msg.is_some(), "told at once");
    assert!(l.warning(Some(7), warning).is_none(), "and not twice");
}

#[tokio::test(start_paused = true)]
async fn idle_counts_from_the_last_activity_or_detach_and_never_while_attached() {
    let mut l = lease_in(3600, MIN);
    let detached = Instant::now();
    assert_eq!(l.idle_at(None), None, "attached");
    assert_eq!(l.idle_at(Some(detached)), Some(detached + MIN));
    tokio::time::advance(Duration::from_secs(30)).await;
    l.touch();
    assert_eq!(l.idle_at(Some(detached)), Some(Instant::now() + MIN));
    let later = Instant::now() + Duration::from_secs(10);
    assert_eq!(l.idle_at(Some(later)), Some(later + MIN), "a later detach");
    let off = lease_in(3600, Duration::ZERO);
    assert_eq!(off.idle_at(Some(detached)), None, "no idle timeout");
}

#[tokio::test(start_paused = true)]
async fn a_stop_waits_its_grace_and_then_nothing_more() {
    let mut l = lease_in(10, MIN);
    l.stopping();
    assert_eq!(l.kill_at(), Some(Instant::now() + Duration::from_secs(5)));
    assert_eq!(l.deadline_at(), None, "stopping already");
    assert_eq!(l.idle_at(Some(Instant::now())), None);
    assert_eq!(l.extend(MIN, None, None, MIN), Err(ExtendRefused::Stopping));
    l.killed();
    assert_eq!(l.kill_at(), None);
    assert_eq!(l.deadline_at(), None);
    assert!(l.deadline().is_some(), "still shown");
    let restored = Lease::new(Some(now_secs()), MIN, Duration::from_secs(5), true);
    assert!(
        restored.kill_at().is_some(),
        "a stop resumed after a restart"
    );
}

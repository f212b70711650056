//! The replay's checks, on recorded streams: a parent's points are
//! recorded through [`PointLog`] exactly as the actor records them, and a
//! fork's output is played against the plan made from them.

use super::*;
use crate::wire::api::Stream;

/// One step of a function's life, as the actor sees it.
#[derive(Clone)]
enum Ev {
    Out(&'static str),
    Took(u64),
}

fn frame_len(s: &str) -> u64 {
    (HEADER_LEN + s.len()) as u64
}

/// Records `events` as a parent would: returns its points and where it
/// stands at the end.
fn parent(events: &[Ev]) -> (Vec<Point>, ParentNow) {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut log = PointLog::open(d.path().join("p.points"), false, 1 << 20);
    let mut offset = 0;
    let mut points = Vec::new();
    for e in events {
        match e {
            Ev::Out(s) => {
                log.output(Stream::Data, true, s.as_bytes());
                offset += frame_len(s);
            }
            Ev::Took(n) => points.extend(log.consumed(*n, offset).map(|(p, _)| p)),
        }
    }
    let now = ParentNow {
        offset,
        points: log.count(),
        current: log.current(),
    };
    (points, now)
}

fn side(plan: Plan) -> (ForkSide, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let paths = Paths::new(d.path(), "f");
    let history = Some(Arc::new(HistoryState::default()));
    let s = ForkSide::new(
        paths,
        history,
        false,
        1 << 20,
        Some(ForkState::Replaying),
        Some(plan),
    );
    (s, d)
}

fn plan(events: &[Ev], k: u64, on: OnDivergence) -> Plan {
    let (points, now) = parent(events);
    let origin = ForkOrigin {
        parent: "s-p".into(),
        at_input: k,
    };
    let inputs = (0..k).map(|i| Bytes::from(i.to_string())).collect();
    Plan::new(origin, inputs, &points, &now, on)
}

/// Plays a fork's events; returns what it delivered.
fn play(s: &mut ForkSide, events: &[Ev]) -> Vec<&'static str> {
    s.on_fed();
    let mut offset = 0;
    let mut kept = Vec::new();
    for e in events {
        match e {
            Ev::Out(t) => {
                offset += frame_len(t);
                if s.on_frame(Stream::Data, true, t.as_bytes(), offset, true) == Disposition::Keep {
                    kept.push(*t);
                }
            }
            Ev::Took(n) => s.on_consumed(*n, offset),
        }
    }
    kept
}

/// An accumulator: answers each input with its running total.
fn accumulator(inputs: u64) -> Vec<Ev> {
    const TOTALS: [&str; 6] = ["1", "3", "6", "10", "15", "21"];
    let mut ev = vec![Ev::Out("ready")];
    for i in 1..=inputs {
        ev.push(Ev::Took(i));
        ev.push(Ev::Out(TOTALS[(i - 1) as usize]));
    }
    ev
}

#[test]
fn a_faithful_replay_goes_live_where_the_parent_stood() {
    let parent_events = accumulator(4);
    let (mut s, _d) = side(plan(&parent_events, 4, OnDivergence::Kill));
    let mut fork_events = accumulator(4);
    fork_events.push(Ev::Took(5));
    fork_events.push(Ev::Out("15"));
    assert_eq!(play(&mut s, &fork_events), vec!["15"]);
    assert_eq!(s.state(), Some(ForkState::Live));
    assert_eq!(s.take_diverged(), None);
}

#[test]
fn at_input_k_skips_only_the_output_made_before_input_k_plus_1_was_taken() {
    let (mut s, _d) = side(plan(&accumulator(5), 2, OnDivergence::Kill));
    // The fork gets inputs 1 and 2 only; its client's first input is 3.
    let mut fork_events = accumulator(2);
    fork_events.push(Ev::Took(3));
    fork_events.push(Ev::Out("6"));
    assert_eq!(play(&mut s, &fork_events), vec!["6"]);
    assert_eq!(s.state(), Some(ForkState::Live));
    // Inputs taken with no output between them share one CREDIT in one
    // run and not in another: both are the same replay.
    let coalesced = vec![
        Ev::Out("a"),
        Ev::Took(1),
        Ev::Took(2),
        Ev::Out("b"),
        Ev::Took(3),
    ];
    let (mut s, _d) = side(plan(&coalesced, 2, OnDivergence::Kill));
    play(&mut s, &[Ev::Out("a"), Ev::Took(2), Ev::Out("b")]);
    assert_eq!(s.state(), Some(ForkState::Live));
}

#[test]
fn different_output_is_a_divergence_that_kills_or_goes_live() {
    let parent_events = vec![Ev::Out("0.25"), Ev::Took(1), Ev::Out("0.75")];
    // Same lengths, other bytes: the digests tell.
    let fork_events = [Ev::Out("0.61"), Ev::Took(1), Ev::Out("0.13")];
    let (mut s, _d) = side(plan(&parent_events, 1, OnDivergence::Kill));
    play(&mut s, &fork_events);
    assert_eq!(s.state(), Some(ForkState::Diverged));
    assert_eq!(s.take_diverged(), Some((1, true)));

    let (mut s, _d) = side(plan(&parent_events, 1, OnDivergence::Continue));
    let kept = play(&mut s, &fork_events);
    assert_eq!(s.take_diverged(), Some((1, false)));
    assert_eq!(kept, vec!["0.13"], "with continue it goes live at once");

    // Longer output runs across the parent's point.
    let (mut s, _d) = side(plan(&parent_events, 1, OnDivergence::Kill));
    play(&mut s, &[Ev::Out("0.25"), Ev::Took(1), Ev::Out("0.755")]);
    assert_eq!(s.state(), Some(ForkState::Diverged));
}

#[test]
fn a_function_that_ends_before_the_parents_point_diverged() {
    let (mut s, _d) = side(plan(&accumulator(3), 3, OnDivergence::Kill));
    play(&mut s, &accumulator(1));
    assert!(s.replaying());
    s.on_output_closed();
    assert_eq!(s.state(), Some(ForkState::Diverged));
}

#[test]
fn a_forged_credit_of_any_count_costs_only_the_inputs_a_fork_needs() {
    let forged = [Point {
        consumed: u64::MAX,
        offset: 10,
        digest: Some(1),
    }];
    let now = ParentNow {
        offset: 20,
        points: 1,
        current: (10, None),
    };
    let origin = ForkOrigin {
        parent: "s-p".into(),
        at_input: 3,
    };
    let p = Plan::new(origin, vec![], &forged, &now, OnDivergence::Kill);
    assert_eq!(p.expected.len(), 3);
    assert_eq!(p.skip, 10, "input 4 was claimed taken at offset 10");
}

#[test]
fn a_fork_with_nothing_to_skip_is_live_once_its_inputs_are_fed() {
    let (mut s, _d) = side(plan(&[Ev::Took(1)], 1, OnDivergence::Kill));
    assert!(s.replaying(), "its input is not fed yet");
    s.on_fed();
    assert_eq!(s.state(), Some(ForkState::Live));
    assert_eq!(s.take_changed(), Some(ForkState::Live));
    assert_eq!(s.take_changed(), None);
}

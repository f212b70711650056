//! Fork by deterministic replay (docs/fork.md).
//!
//! A parent session keeps what a fork needs: its input history
//! ([`history`], written by the stdin writer) and its replay points
//! ([`points`], written by the actor from the driver's CREDITs, each with
//! a digest of the output before it). A fork is a new session of the same
//! function, arguments, image and limits, whose stdin writer first feeds
//! it the parent's inputs `1..=K`, and whose actor swallows its output up
//! to the parent's replay point of `K` while checking it against the
//! parent's digests ([`Replay`]). From there on the fork is live: its
//! client's output starts at seq 1 with what follows, and its own input
//! follows as input `K + 1`.
//!
//! [`ForkSide`] is the actor's part: the points it records for every
//! session, and a fork's replay.

pub mod history;
pub mod points;

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::session::record::ForkOrigin;
use crate::wire::api::{ForkState, OnDivergence, Stream};
use crate::wire::driver::HEADER_LEN;
use history::HistoryState;
use points::{empty_digest, Point, PointLog};

/// Where a session keeps its fork material, beside its spool.
#[derive(Debug, Clone)]
pub struct Paths {
    pub inputs: PathBuf,
    pub points: PathBuf,
}

impl Paths {
    pub fn new(spool_dir: &Path, id: &str) -> Paths {
        Paths {
            inputs: spool_dir.join(format!("{id}.inputs")),
            points: spool_dir.join(format!("{id}.points")),
        }
    }

    /// Deletes both files (the session is reaped).
    pub fn remove(&self) {
        for p in [&self.inputs, &self.points] {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove fork history");
                }
            }
        }
    }
}

/// What a fork replays and checks, worked out from its parent's history
/// and points when the fork is made.
#[derive(Debug, Clone)]
pub struct Plan {
    pub origin: ForkOrigin,
    /// The parent's inputs `1..=K`.
    pub inputs: Vec<Bytes>,
    /// The output stream offset where the fork goes live.
    pub skip: u64,
    /// For each input `j` the parent had taken (up to `K`): the offset at
    /// which it took it, and the digest of the output since the input
    /// before.
    expected: Vec<(u64, Option<u64>)>,
    /// The last segment, up to `skip`: where it starts and its digest.
    tail: (u64, Option<u64>),
    pub on_divergence: OnDivergence,
}

/// Where the parent stands when the fork is made (its actor's answer).
#[derive(Debug, Clone)]
pub struct ParentNow {
    /// How far its output stream has been taken in.
    pub offset: u64,
    /// The replay points recorded so far.
    pub points: u64,
    /// The segment in progress: where it starts and its digest so far.
    pub current: (u64, Option<u64>),
}

impl Plan {
    /// `points` are the parent's, as recorded when it answered (`now`).
    pub fn new(
        origin: ForkOrigin,
        inputs: Vec<Bytes>,
        points: &[Point],
        now: &ParentNow,
        on_divergence: OnDivergence,
    ) -> Plan {
        let k = origin.at_input as usize;
        let per_input = expand(points, k.saturating_add(1));
        let (skip, tail, expected) = match per_input.get(k) {
            // Input K+1 was taken: the fork goes live where it was.
            Some(&(offset, digest)) => {
                let from = if k == 0 { 0 } else { per_input[k - 1].0 };
                (offset, (from, digest), per_input[..k].to_vec())
            }
            // It was not (yet): the fork goes live where the parent is.
            None => (now.offset, now.current, per_input),
        };
        Plan {
            origin,
            inputs,
            skip,
            expected,
            tail,
            on_divergence,
        }
    }
}

/// One `(offset, digest)` per input, for the first `limit` inputs: a
/// point covering several inputs gives the first its digest and the others
/// an empty segment (no output came between them). The limit matters: a
/// function can forge a CREDIT claiming any count (the stdin writer then
/// ends it, but the point may be recorded first).
fn expand(points: &[Point], limit: usize) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    let mut before = 0u64;
    for p in points {
        if p.consumed <= before || out.len() >= limit {
            continue;
        }
        let first = before + 1; // before < p.consumed: no overflow
        let upto = p
            .consumed
            .min(before.saturating_add((limit - out.len()) as u64));
        for j in first..=upto {
            let digest = if j == first {
                p.digest
            } else {
                Some(empty_digest())
            };
            out.push((p.offset, digest));
        }
        before = before.max(p.consumed);
    }
    out
}

/// A session's answer to a fork request: what the fork is made from.
#[derive(Debug, Clone)]
pub struct Source {
    pub record: crate::session::record::SessionRecord,
    /// The inputs the fork replays.
    pub at_input: u64,
    pub now: ParentNow,
    pub paths: Paths,
}

/// Why a session cannot be forked (now). `Display` is the text users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this session keeps no input history (it was run with forkable: false, or before forks existed), so it cannot be forked")]
    NotForkable,
    #[error("this session is a fork still replaying its parent's input; fork it once it is live")]
    Replaying,
    #[error("at_input {asked} is beyond the {applied} inputs this session has applied")]
    BeyondApplied { asked: u64, applied: u64 },
    #[error("fork_history_exceeded: the input history stops after input {kept} (fork_history_max was reached), so a fork at input {asked} cannot be replayed")]
    HistoryExceeded { asked: u64, kept: u64 },
}

/// What the actor does with a frame of output.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Into the log, as always.
    Keep,
    /// Replayed output: not logged, not delivered. The driver may forget
    /// it up to this offset.
    Swallow(u64),
}

/// A fork's replay, on the actor's side.
struct Replay {
    plan: Plan,
    /// The output has reached `plan.skip`.
    reached: bool,
    /// The stdin writer has written every replayed input.
    fed: bool,
}

/// The actor's fork part: replay points for every forkable session, and a
/// fork's replay.
pub struct ForkSide {
    points: Option<PointLog>,
    history: Option<Arc<HistoryState>>,
    replay: Option<Replay>,
    state: Option<ForkState>,
    pub paths: Paths,
    /// Set when the state changes, for the actor to record; taken once.
    changed: bool,
    /// The input where a divergence was seen, for the actor to act on.
    diverged_at: Option<u64>,
}

impl ForkSide {
    /// `history`: the stdin writer's, when the session keeps one. `state`:
    /// a fork's replay as recorded (a new fork: `Replaying`).
    pub fn new(
        paths: Paths,
        history: Option<Arc<HistoryState>>,
        restored: bool,
        max: u64,
        state: Option<ForkState>,
        plan: Option<Plan>,
    ) -> ForkSide {
        let points = history
            .as_ref()
            .map(|_| PointLog::open(paths.points.clone(), restored, max));
        let replay = plan.map(|plan| Replay {
            reached: plan.skip == 0,
            fed: plan.inputs.is_empty(),
            plan,
        });
        let mut side = ForkSide {
            points,
            history,
            replay,
            state,
            paths,
            changed: false,
            diverged_at: None,
        };
        side.check_live();
        side
    }

    pub fn state(&self) -> Option<ForkState> {
        self.state
    }

    /// Whether the fork is still replaying (its state says so).
    pub fn replaying(&self) -> bool {
        self.state == Some(ForkState::Replaying)
    }

    /// Whether output is still swallowed: while replaying, and after a
    /// divergence that ends the fork (until it has ended).
    pub fn swallowing(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| !r.reached)
    }

    /// The state changed since the last call (to be recorded).
    pub fn take_changed(&mut self) -> Option<ForkState> {
        std::mem::take(&mut self.changed)
            .then_some(self.state)
            .flatten()
    }

    /// A divergence seen since the last call, and whether it ends the fork.
    pub fn take_diverged(&mut self) -> Option<(u64, bool)> {
        let input = self.diverged_at.take()?;
        let kill = self
            .replay
            .as_ref()
            .is_none_or(|r| r.plan.on_divergence == OnDivergence::Kill);
        Some((input, kill))
    }

    fn set(&mut self, state: ForkState) {
        if self.state != Some(state) {
            self.state = Some(state);
            self.changed = true;
        }
    }

    fn check_live(&mut self) {
        if self.replaying() && self.replay.as_ref().is_some_and(|r| r.reached && r.fed) {
            self.set(ForkState::Live);
        }
    }

    fn diverge(&mut self, input: u64) {
        if self.diverged_at.is_none() && self.state != Some(ForkState::Diverged) {
            tracing::info!(input, "fork diverged from its parent");
            self.diverged_at = Some(input);
            self.set(ForkState::Diverged);
            // With `continue` the fork goes live from here; with `kill`
            // nothing more is shown before it ends.
            if let Some(r) = self.replay.as_mut() {
                r.reached |= r.plan.on_divergence == OnDivergence::Continue;
            }
        }
    }

    /// A frame of output: hashed for the session's own points, and checked
    /// and swallowed while a fork replays.
    pub fn on_frame(
        &mut self,
        stream: Stream,
        end: bool,
        bytes: &[u8],
        offset: u64,
        replayable: bool,
    ) -> Disposition {
        if replayable {
            if let Some(p) = self.points.as_mut() {
                p.output(stream, end, bytes);
            }
        }
        let current = self.points.as_ref().map(|p| p.current());
        let next_input = self.consumed().saturating_add(1);
        // Diverged and still not reached: it is being killed for it.
        let diverged = self.state == Some(ForkState::Diverged);
        let Some(r) = self.replay.as_mut() else {
            return Disposition::Keep;
        };
        if r.reached {
            return Disposition::Keep;
        }
        let skip = r.plan.skip;
        // Raw stderr while replaying: the parent's client saw it.
        if diverged || !replayable || offset < skip {
            return Disposition::Swallow(offset);
        }
        let start = offset.saturating_sub((HEADER_LEN + bytes.len()) as u64);
        if start < skip && offset > skip {
            // A frame across the parent's point: the output differs.
            self.diverge(next_input);
            return if self.swallowing() {
                Disposition::Swallow(offset)
            } else {
                Disposition::Keep
            };
        }
        if offset > skip {
            // Cannot happen (a frame starting at or past the point means
            // the point was met); delivered rather than lost.
            r.reached = true;
            self.check_live();
            return Disposition::Keep;
        }
        // The parent's point, met exactly: the last segment is checked.
        let (from, want) = r.plan.tail;
        let tail_differs = match current {
            Some((at, Some(got))) if at == from => want.is_some_and(|w| w != got),
            _ => false,
        };
        if tail_differs {
            self.diverge(next_input);
        } else {
            r.reached = true;
            self.check_live();
        }
        Disposition::Swallow(offset)
    }

    /// Inputs the function has taken, by its CREDITs.
    fn consumed(&self) -> u64 {
        self.points.as_ref().map_or(0, |p| p.consumed_so_far())
    }

    /// A CREDIT: the function took inputs up to `consumed` at `offset`.
    pub fn on_consumed(&mut self, consumed: u64, offset: u64) {
        let Some((point, before)) = self
            .points
            .as_mut()
            .and_then(|p| p.consumed(consumed, offset))
        else {
            return;
        };
        let Some(r) = self.replay.as_ref() else {
            return;
        };
        let expected = &r.plan.expected;
        for j in before + 1..=point.consumed.min(expected.len() as u64) {
            let (want_offset, want_digest) = expected[(j - 1) as usize];
            let got_digest = if j == before + 1 {
                point.digest
            } else {
                Some(empty_digest())
            };
            let digest_differs = matches!((want_digest, got_digest), (Some(w), Some(g)) if w != g);
            if want_offset != point.offset || digest_differs {
                self.diverge(j);
                return;
            }
        }
    }

    /// The stdin writer has written every replayed input.
    pub fn on_fed(&mut self) {
        if let Some(r) = self.replay.as_mut() {
            r.fed = true;
        }
        self.check_live();
    }

    /// The function ended while its output was still being replayed: the
    /// parent's went further, so the replay differed.
    pub fn on_output_closed(&mut self) {
        if self.replaying() {
            let consumed = self.consumed();
            self.diverge(consumed.saturating_add(1));
        }
    }

    /// Where this session stands, for a fork of it; `None` when it keeps no
    /// history (not forkable) or is still replaying itself.
    pub fn now(&self, offset: u64) -> Option<ParentNow> {
        let p = self.points.as_ref()?;
        Some(ParentNow {
            offset,
            points: p.count(),
            current: p.current(),
        })
    }

    /// The history's progress, when one is kept.
    pub fn history(&self) -> Option<&HistoryState> {
        self.history.as_deref()
    }
}

#[cfg(test)]
mod tests;

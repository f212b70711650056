//! Reconcile on start: make what runs match what the database says, the
//! way a Kubernetes controller does. Level-triggered and idempotent: it
//! looks at the state as it is, and running it twice changes nothing more.
//!
//! For every session in the database:
//! - its container runs: attach again and RESUME the driver, which
//!   retransmits the output the controller had not yet made durable
//!   (including everything written while it was down). This part waits for
//!   functions, so it runs after the API serves ([`resume_all`]), several
//!   at a time; meanwhile the session is listed as `resuming` and an
//!   attach is answered 503 with that reason;
//! - its container has exited: record the exit (the driver only exits once
//!   its output is acknowledged, so nothing is missing) and serve what is
//!   left to deliver;
//! - its container is gone: serve what is left, ending it as lost if it had
//!   not ended.
//!
//! Containers carrying this controller's labels (its label prefix and its
//! own identity, see `controller::identity`) that belong to no session are
//! removed: a session's container whose session is gone, and the idle
//! warm containers of a controller that did not stop cleanly (a warm
//! container a session took is known by the session's container id, since
//! Docker labels cannot change after creation). Containers under the same
//! prefix that another controller made are left alone, with a warning
//! naming them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::sessions::Sessions;
use crate::config::Config;
use crate::runtime::{ContainerState, OutputChunk};
use crate::session::actor::{exit_reason, short};
use crate::session::io::InputProgress;
use crate::session::log::{Entry, OutputLog};
use crate::session::record::now_secs;
use crate::session::spawn::{AttachedIo, Launch, SessionContext};
use crate::session::store::SessionRow;
use crate::wire::api::{ExitInfo, ExitReason, ForkState};
use crate::wire::driver::{self, Decoder, Sync, ToDriver, NONCE_LEN};

/// What recovery works with.
#[derive(Clone)]
pub struct Recovery {
    pub sessions: Arc<Sessions>,
    pub ctx: SessionContext,
    pub config: Arc<Config>,
    /// The label of the warm pool's containers.
    pub warm_label: String,
}

impl Recovery {
    /// Recovers into the launcher's table, with its sessions' context.
    pub fn new(launcher: &super::create::Launcher) -> Recovery {
        Recovery {
            sessions: launcher.sessions.clone(),
            ctx: launcher.ctx.clone(),
            config: launcher.config.clone(),
            warm_label: launcher.pool.label(),
        }
    }
}

/// Drivers resumed at once after a restart. Each waits for one answer, so
/// a few silent ones cannot hold up the rest for long.
pub const RESUME_CONCURRENCY: usize = 16;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sessions whose function still runs: resumed after serving starts.
    pub resuming: usize,
    pub ended: usize,
    pub orphans_removed: usize,
    /// Containers under our label prefix that another controller made.
    pub others_left: usize,
}

/// What is left to do once serving has started: drivers to resume.
pub struct Pending {
    rows: Vec<SessionRow>,
}

/// The fast part, before the API serves: every session whose function has
/// ended is served again at once, every running one is marked as resuming
/// (listed, counted, and answered as such), and orphans are removed. Only
/// inspecting containers, never waiting for a driver: a function that does
/// not answer RESUME can no longer delay the start (it once took 10 s per
/// silent session, one after the other).
pub async fn reconcile(r: &Recovery) -> anyhow::Result<(Report, Pending)> {
    let rows = r.ctx.store.sessions()?;
    // Container id -> what it was for (for the log), and which controller
    // made it.
    let mut containers: HashMap<String, (String, Option<String>)> = HashMap::new();
    let prefix = &r.config.label_prefix;
    let (owner_label, me) = r.config.controller_label();
    for (label, kind) in [
        (format!("{prefix}.session"), "session"),
        (r.warm_label.clone(), "warm"),
        (crate::controller::check::check_label(prefix), "check"),
    ] {
        for c in r.ctx.runtime.list(&label).await? {
            let what = c.labels.get(&label).cloned().unwrap_or_default();
            let owner = c.labels.get(&owner_label).cloned();
            containers.insert(c.id, (format!("{kind} {what}"), owner));
        }
    }
    let mut report = Report::default();
    let mut pending = Pending { rows: Vec::new() };
    for row in rows {
        containers.remove(&row.record.container);
        if r.sessions.get(&row.record.token).is_some()
            || r.sessions.resuming(&row.record.token).is_some()
        {
            continue; // already live: nothing to do
        }
        match r.ctx.runtime.state(&row.record.container).await {
            Ok(ContainerState::Running) => {
                r.sessions.set_resuming(row.clone());
                pending.rows.push(row);
                report.resuming += 1;
            }
            Ok(state) => match adopt_ended(r, row, state) {
                Ok(()) => report.ended += 1,
                Err(e) => tracing::error!(error = %e, "cannot restore a session"),
            },
            Err(e) => {
                tracing::error!(session = %row.record.id, error = %e, "cannot inspect a session's container")
            }
        }
    }
    // What is left belongs to no session of ours: an orphan if we made it,
    // else another controller's (one sharing the engine and the label
    // prefix, or one from before controllers had identities), never ours
    // to touch.
    let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, (what, owner)) in containers {
        if owner.as_deref() != Some(me.as_str()) {
            let owner = owner.unwrap_or_else(|| "(none: made before controller identities)".into());
            others
                .entry(owner)
                .or_default()
                .push(short(&id).to_string());
            continue;
        }
        tracing::warn!(container = %id, was = %what, "removing orphan container");
        if let Err(e) = r.ctx.runtime.remove(&id).await {
            tracing::warn!(container = %id, error = %e, "cannot remove orphan container");
        } else {
            report.orphans_removed += 1;
        }
    }
    for (owner, ids) in others {
        tracing::warn!(
            controller = %owner,
            containers = %ids.join(" "),
            label_prefix = %prefix,
            "leaving alone containers of another controller with the same label prefix \
             (give each controller its own label_prefix or BENTO_LABEL_PREFIX to keep them apart)"
        );
        report.others_left += ids.len();
    }
    tracing::info!(?report, "reconciled");
    Ok((report, pending))
}

/// The slow part, while the API serves: resumes the running sessions'
/// drivers, [`RESUME_CONCURRENCY`] at a time, each within the configured
/// `resume_timeout`. A session whose driver does not answer in time, or
/// answers what cannot be true, is killed and ends as lost; the others
/// are not held up by it. Stops early at shutdown (those sessions are
/// resumed at the next start).
pub async fn resume_all(r: Recovery, pending: Pending, shutdown: CancellationToken) {
    let n = pending.rows.len();
    if n == 0 {
        return;
    }
    let work =
        futures_util::stream::iter(pending.rows).for_each_concurrent(RESUME_CONCURRENCY, |row| {
            let r = r.clone();
            async move {
                let token = row.record.token.clone();
                if let Err(e) = adopt_running(&r, row).await {
                    tracing::error!(error = %e, "cannot restore a session");
                }
                r.sessions.resumed(&token);
            }
        });
    tokio::select! {
        _ = work => tracing::info!(sessions = n, "resumed"),
        _ = shutdown.cancelled() => {}
    }
}

/// Restores a session whose function has ended (or whose container is gone).
fn adopt_ended(r: &Recovery, row: SessionRow, state: ContainerState) -> anyhow::Result<()> {
    let mut log = r.ctx.recover_log(&row.record.id, row.acked)?;
    let exit = match (&row.exit, row.ended_at) {
        (Some(e), Some(at)) if log.has_exit() => (e.clone(), at),
        _ => {
            let reason = exit_reason(row.kill_reason.clone(), state).unwrap_or(ExitReason::Lost {
                message: "container disappeared".into(),
            });
            finish(r, &row, &mut log, reason)?
        }
    };
    tracing::info!(session = %row.record.id, reason = %exit.0.reason, "session ended while the controller was away");
    launch_ended(r, row, log, exit);
    Ok(())
}

/// Serves a restored session whose function has ended: its output only.
fn launch_ended(r: &Recovery, row: SessionRow, log: OutputLog, exit: (ExitInfo, u64)) {
    r.sessions.launch(
        Launch {
            row,
            log,
            io: None,
            exit: Some(exit),
            restored: true,
            fork: None,
        },
        &r.ctx,
    );
}

/// Restores a session whose function was running: resumes its driver, or
/// ends it as lost if that fails.
async fn adopt_running(r: &Recovery, row: SessionRow) -> anyhow::Result<()> {
    let mut log = r.ctx.recover_log(&row.record.id, row.acked)?;
    let timeout = r.config.resume_timeout;
    let resumed = if row.fork_state == Some(ForkState::Replaying) {
        // Its replay lived in the controller that died (the inputs not yet
        // fed, the digests not yet checked): a new fork does it again.
        Err(anyhow::anyhow!(
            "it was still replaying its parent's input; fork the parent again"
        ))
    } else {
        match tokio::time::timeout(timeout, resume(r, &row, &mut log)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "the driver did not answer RESUME within {}s",
                timeout.as_secs_f64()
            )),
        }
    };
    match resumed {
        Ok(io) => {
            tracing::info!(session = %row.record.id, offset = io.offset, "session resumed");
            r.sessions.launch(
                Launch {
                    row,
                    log,
                    io: Some(io),
                    exit: None,
                    restored: true,
                    fork: None,
                },
                &r.ctx,
            );
        }
        Err(e) => {
            tracing::warn!(session = %row.record.id, error = %e, "cannot resume; killing it");
            let reason = ExitReason::Lost {
                message: format!("could not resume after a controller restart: {e}"),
            };
            // Recorded first: a shutdown between the kill and `finish` must
            // not leave the next start to call it an ordinary exit.
            if let Err(e) = r.ctx.store.set_kill_reason(&row.record.token, &reason) {
                tracing::warn!(session = %row.record.id, error = %e, "cannot save kill reason");
            }
            let _ = r.ctx.runtime.kill(&row.record.container).await;
            let exit = finish(r, &row, &mut log, reason)?;
            launch_ended(r, row, log, exit);
        }
    }
    Ok(())
}

/// Records a session's end in its log and the database.
fn finish(
    r: &Recovery,
    row: &SessionRow,
    log: &mut OutputLog,
    reason: ExitReason,
) -> anyhow::Result<(ExitInfo, u64)> {
    let info = ExitInfo::from(reason);
    let at = now_secs();
    r.ctx.store.set_exit(&row.record.token, &info, at)?;
    if !log.has_exit() {
        let offset = log.stream_offset();
        log.append(Entry::Exit(info.clone()), offset)?;
    }
    Ok((info, at))
}

/// Checks a driver's SYNC answer against what the controller itself knows,
/// before anything is done with it: the function can read the nonce and
/// forge the answer. The driver resumes from the offset it was sent (it has
/// forgotten only what was acknowledged to it, all of it durable here), it
/// cannot have consumed more input than it received, nor received more
/// than was ever written (`reserved`, the bound recorded before writing).
/// Nothing here or after allocates per claimed input.
pub fn check_sync(sync: &Sync, durable: u64, reserved: Option<u64>) -> anyhow::Result<()> {
    if sync.offset != durable {
        anyhow::bail!(
            "the driver resumed from offset {}, not {durable}",
            sync.offset
        );
    }
    if sync.inputs_consumed > sync.inputs_received {
        anyhow::bail!(
            "the driver claims {} inputs consumed of {} received",
            sync.inputs_consumed,
            sync.inputs_received
        );
    }
    // Without a recorded bound (a session from before it was kept), only
    // the largest counts are impossible.
    let bound = reserved.unwrap_or(u64::MAX - 1);
    if sync.inputs_received > bound {
        anyhow::bail!(
            "the driver claims {} inputs received, more than were written",
            sync.inputs_received
        );
    }
    Ok(())
}

/// Attaches to a running container again and resumes its driver: RESUME
/// names the output already durable; the driver answers SYNC (marked with
/// our nonce, so the point is found in a stream joined mid-frame) and
/// retransmits the rest.
async fn resume(r: &Recovery, row: &SessionRow, log: &mut OutputLog) -> anyhow::Result<AttachedIo> {
    let mut cio = r.ctx.runtime.attach(&row.record.container).await?;
    let nonce: [u8; NONCE_LEN] = *uuid::Uuid::new_v4().as_bytes();
    let resume = ToDriver::Resume {
        offset: log.durable_offset(),
        nonce,
    };
    driver::write(&mut cio.input, &resume).await?;
    let mut decoder = Decoder::new();
    // (The caller bounds how long this waits.)
    let sync = loop {
        let Some(chunk) = cio.output.next().await else {
            anyhow::bail!("the container's output ended before the driver answered");
        };
        match chunk? {
            OutputChunk::Stdout(b) => {
                decoder.feed(b);
                if let Some(sync) = decoder.seek_sync(&nonce) {
                    break sync;
                }
            }
            OutputChunk::Stderr(bytes) => {
                // Bounded like any output, since nobody reads it yet.
                let config = &r.config;
                if log.pending_cost() >= config.output_cap
                    || log.pending_messages() >= config.output_max_messages
                {
                    anyhow::bail!(
                        "the function's stderr reached the output cap before the driver answered"
                    );
                }
                let offset = log.stream_offset();
                let entry = Entry::Output {
                    stream: crate::wire::api::Stream::Stderr,
                    end: true,
                    bytes,
                };
                log.append(entry, offset)?;
            }
        }
    };
    check_sync(&sync, log.durable_offset(), row.input_reserved)?;
    // What followed the SYNC frame in the same chunk comes first.
    let rest = decoder.into_remaining();
    let head =
        futures_util::stream::iter((!rest.is_empty()).then(|| Ok(OutputChunk::Stdout(rest))));
    let output = head.chain(cio.output).boxed();
    Ok(AttachedIo {
        io: crate::runtime::ContainerIo {
            output,
            input: cio.input,
        },
        offset: sync.offset,
        progress: InputProgress::after(sync.inputs_received, row.input_closed),
        consumed: sync.inputs_consumed,
    })
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod reconcile_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(offset: u64, inputs_received: u64, inputs_consumed: u64) -> Sync {
        Sync {
            offset,
            inputs_received,
            inputs_consumed,
        }
    }

    #[test]
    fn a_true_sync_is_taken() {
        assert!(check_sync(&sync(100, 5, 3), 100, Some(1024)).is_ok());
        assert!(check_sync(&sync(0, 0, 0), 0, Some(1024)).is_ok());
        assert!(check_sync(&sync(0, 1024, 1024), 0, Some(1024)).is_ok());
        assert!(check_sync(&sync(0, 7, 7), 0, None).is_ok());
    }

    #[test]
    fn forged_syncs_are_refused() {
        let refused = |s: Sync, durable, reserved| {
            check_sync(&s, durable, reserved)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused(sync(0, 1 << 40, 0), 0, Some(1024)).contains("more than were written"));
        assert!(refused(sync(0, 1025, 0), 0, Some(1024)).contains("more than were written"));
        assert!(refused(sync(0, u64::MAX, 0), 0, None).contains("more than were written"));
        assert!(refused(sync(0, 3, 4), 0, Some(1024)).contains("consumed"));
        assert!(refused(sync(1 << 60, 0, 0), 100, Some(1024)).contains("offset"));
        assert!(refused(sync(50, 0, 0), 100, Some(1024)).contains("offset"));
    }
}

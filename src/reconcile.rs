//! Reconcile on start: make what runs match what the database says, the
//! way a Kubernetes controller does. Level-triggered and idempotent: it
//! looks at the state as it is, and running it twice changes nothing more.
//!
//! For every session in the database:
//! - its container runs: attach again and RESUME the driver, which
//!   retransmits the output the controller had not yet made durable
//!   (including everything written while it was down);
//! - its container has exited: record the exit (the driver only exits once
//!   its output is acknowledged, so nothing is missing) and serve what is
//!   left to deliver;
//! - its container is gone: serve what is left, ending it as lost if it had
//!   not ended.
//!
//! Containers carrying this controller's labels that belong to no session
//! are removed: a session's container whose session is gone, and the idle
//! warm containers of a controller that did not stop cleanly (a warm
//! container a session took is known by the session's container id, since
//! Docker labels cannot change after creation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::db::SessionRow;
use crate::driver_frame::{Decoder, KIND_RESUME, NONCE_LEN};
use crate::protocol::{ExitInfo, ExitReason};
use crate::registry::{AttachedIo, Launch, Registry};
use crate::runtime::{ContainerState, OutputChunk};
use crate::session::actor::{exit_reason, now_secs};
use crate::session::io::{write_message, InputProgress};
use crate::session::log::{Entry, OutputLog};

/// How long a resumed driver has to answer RESUME.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub resumed: usize,
    pub ended: usize,
    pub orphans_removed: usize,
}

pub async fn reconcile(registry: &Arc<Registry>) -> anyhow::Result<Report> {
    let rows = registry.db().sessions()?;
    // Container id -> what it was for, for the log.
    let mut containers: HashMap<String, String> = HashMap::new();
    let prefix = &registry.config().label_prefix;
    for (label, kind) in [
        (format!("{prefix}.session"), "session"),
        (registry.pool().label(), "warm"),
    ] {
        for c in registry.runtime().list(&label).await? {
            let what = c.labels.get(&label).cloned().unwrap_or_default();
            containers.insert(c.id, format!("{kind} {what}"));
        }
    }
    let mut report = Report::default();
    for row in rows {
        containers.remove(&row.container);
        if registry.get(&row.token).is_some() {
            continue; // already live: nothing to do
        }
        match adopt(registry, row).await {
            Ok(true) => report.resumed += 1,
            Ok(false) => report.ended += 1,
            Err(e) => tracing::error!(error = %e, "cannot restore a session"),
        }
    }
    for (id, what) in containers {
        tracing::warn!(container = %id, was = %what, "removing orphan container");
        if let Err(e) = registry.runtime().remove(&id).await {
            tracing::warn!(container = %id, error = %e, "cannot remove orphan container");
        } else {
            report.orphans_removed += 1;
        }
    }
    tracing::info!(?report, "reconciled");
    Ok(report)
}

/// Restores one session; `Ok(true)` if its function still runs.
async fn adopt(registry: &Arc<Registry>, row: SessionRow) -> anyhow::Result<bool> {
    let mut log = OutputLog::recover(
        registry.spool_path(&row.id),
        registry.memory_window(),
        row.acked,
    )?;
    let state = registry.runtime().state(&row.container).await?;
    if state == ContainerState::Running {
        match resume(registry, &row, &mut log).await {
            Ok(io) => {
                tracing::info!(session = %row.id, offset = io.offset, "session resumed");
                registry.launch(Launch {
                    row,
                    log,
                    io: Some(io),
                    exit: None,
                    restored: true,
                });
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!(session = %row.id, error = %e, "cannot resume; killing it");
                let _ = registry.runtime().kill(&row.container).await;
                let reason = ExitReason::Lost {
                    message: format!("could not resume after a controller restart: {e}"),
                };
                let exit = finish(registry, &row, &mut log, reason)?;
                registry.launch(Launch {
                    row,
                    log,
                    io: None,
                    exit: Some(exit),
                    restored: true,
                });
                return Ok(false);
            }
        }
    }
    let exit = match (&row.exit, row.ended_at) {
        (Some(e), Some(at)) if log.has_exit() => (e.clone(), at),
        _ => {
            let reason = exit_reason(row.kill_reason.clone(), state).unwrap_or(ExitReason::Lost {
                message: "container disappeared".into(),
            });
            finish(registry, &row, &mut log, reason)?
        }
    };
    tracing::info!(session = %row.id, reason = %exit.0.reason, "session ended while the controller was away");
    registry.launch(Launch {
        row,
        log,
        io: None,
        exit: Some(exit),
        restored: true,
    });
    Ok(false)
}

/// Records a session's end in its log and the database.
fn finish(
    registry: &Registry,
    row: &SessionRow,
    log: &mut OutputLog,
    reason: ExitReason,
) -> anyhow::Result<(ExitInfo, u64)> {
    let info = ExitInfo::from(reason);
    let at = now_secs();
    registry.db().set_exit(&row.token, &info, at)?;
    if !log.has_exit() {
        let offset = log.stream_offset();
        log.append(Entry::Exit(info.clone()), offset)?;
    }
    Ok((info, at))
}

/// Attaches to a running container again and resumes its driver: RESUME
/// names the output already durable; the driver answers SYNC (marked with
/// our nonce, so the point is found in a stream joined mid-frame) and
/// retransmits the rest.
async fn resume(
    registry: &Registry,
    row: &SessionRow,
    log: &mut OutputLog,
) -> anyhow::Result<AttachedIo> {
    let mut cio = registry.runtime().attach(&row.container).await?;
    let nonce: [u8; NONCE_LEN] = *uuid::Uuid::new_v4().as_bytes();
    let mut payload = log.durable_offset().to_be_bytes().to_vec();
    payload.extend_from_slice(&nonce);
    write_message(&mut cio.input, KIND_RESUME, &payload).await?;
    let mut decoder = Decoder::new();
    let sync = tokio::time::timeout(SYNC_TIMEOUT, async {
        while let Some(chunk) = cio.output.next().await {
            match chunk? {
                OutputChunk::Stdout(b) => {
                    decoder.feed(b);
                    if let Some(sync) = decoder.seek_sync(&nonce) {
                        return Ok(sync);
                    }
                }
                OutputChunk::Stderr(bytes) => {
                    let offset = log.stream_offset();
                    let entry = Entry::Output {
                        stream: crate::protocol::Stream::Stderr,
                        end: true,
                        bytes,
                    };
                    log.append(entry, offset)?;
                }
            }
        }
        anyhow::bail!("the container's output ended before the driver answered")
    })
    .await
    .map_err(|_| anyhow::anyhow!("the driver did not answer RESUME in time"))??;
    if sync.offset != log.durable_offset() {
        tracing::warn!(
            session = %row.id,
            want = log.durable_offset(),
            got = sync.offset,
            "the driver resumed from another offset; output between them is lost"
        );
    }
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

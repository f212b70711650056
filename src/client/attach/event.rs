//! What an attachment reports to its consumer: [`Event`]s, the last of
//! which says why it ended ([`AttachEnd`]).

use crate::client::ClientError;
use crate::wire::api::{CloseReason, DeadlineKind, ExitInfo, OutputFrame};
use std::time::Duration;

/// What an attachment reports, in order.
#[derive(Debug)]
pub enum Event {
    /// A chunk of output. Output is delivered once, in seq order, even across
    /// reconnects. Call [`Attachment::written`](super::Attachment::written)
    /// once it is written out.
    Output(OutputFrame),
    /// The function ended; this is the last output message. Once it is
    /// reported as written, the attachment acks it and closes.
    Exit { seq: u64, exit: ExitInfo },
    /// The session ends soon: at `at` (seconds since the epoch), in
    /// `in_secs`, for `reason`, unless its deadline is extended
    /// ([`Client::extend`](crate::client::Client::extend)). Sent before
    /// the end, and again when an extend moves a deadline warned of.
    Deadline {
        at: u64,
        reason: DeadlineKind,
        in_secs: u64,
    },
    /// The connection failed and the next attempt starts after `delay`.
    /// `attempt` counts from 1 within one outage.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        cause: String,
    },
    /// Connected again; delivery resumes after the last seq received.
    Reconnected { last_seq: u64 },
    /// The attachment is over; [`Attachment::next`](super::Attachment::next)
    /// returns `None` from now on.
    Ended(AttachEnd),
}

/// Why an attachment ended.
#[derive(Debug)]
pub enum AttachEnd {
    /// The exit was delivered, written and acknowledged.
    Finished,
    /// This client detached
    /// ([`Attachment::detach`](super::Attachment::detach), or the attachment
    /// was dropped).
    Detached,
    /// The server closed the connection for this reason (another client
    /// took over, `bento close`, ...).
    Closed(CloseReason),
    /// The connection was lost and could not (or was not to) be re-established;
    /// also unknown sessions on reconnect and protocol errors.
    Failed(ClientError),
}

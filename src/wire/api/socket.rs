//! The attach WebSocket: binary frames of bytes and JSON control messages.
//!
//! The attach socket carries two kinds of WebSocket message:
//! - **binary** messages carry bytes (output to the client, input to the
//!   server) with a small fixed header, so that large payloads are never
//!   base64-encoded or copied into JSON;
//! - **text** messages carry JSON control messages ([`ServerMsg`],
//!   [`ClientMsg`]), tagged by `"type"`.
//!
//! The full rules (sequence numbers, acks, resume) are in `docs/api.md`.

use super::Usage;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which stream an output message came from.
///
/// (The variants' notes are plain comments: documented variants would make
/// the schema a `oneOf` of constants, which generated clients read badly;
/// a plain `enum` of strings is what they expect.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    // A message the function gave to `send()`.
    Data = 1,
    // What the function printed.
    Stdout = 2,
    // What the function wrote to stderr (or to fd 2 directly).
    Stderr = 3,
}

impl Stream {
    pub fn from_u8(b: u8) -> Option<Stream> {
        match b {
            1 => Some(Stream::Data),
            2 => Some(Stream::Stdout),
            3 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One chunk of output, as delivered to a client.
///
/// A `send()` message may span several chunks; `end` marks its last chunk.
/// For stdout and stderr `end` is always true: those streams have no message
/// boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFrame {
    pub seq: u64,
    pub stream: Stream,
    pub end: bool,
    pub bytes: Bytes,
}

/// The largest input message a client may send (the bytes after the header).
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// Size of the binary output header: stream, flags, seq.
pub const OUTPUT_HEADER_LEN: usize = 1 + 1 + 8;
/// Size of the binary input header: kind, seq.
pub const INPUT_HEADER_LEN: usize = 1 + 8;
const FLAG_END: u8 = 1;
const INPUT_KIND_DATA: u8 = 1;

impl OutputFrame {
    /// Encodes as a binary WebSocket payload: `[stream u8][flags u8][seq u64 BE][bytes]`.
    pub fn encode(&self) -> Bytes {
        self.encode_into(&mut BytesMut::new())
    }

    /// Like [`OutputFrame::encode`], in `buf`'s memory. Once the returned
    /// bytes are dropped, the next call reuses that memory instead of
    /// allocating: a connection that encodes one message at a time (the
    /// WebSocket layer copies each into its own buffer) then streams
    /// without an allocation, and the page faults of fresh memory, per
    /// message.
    pub fn encode_into(&self, buf: &mut BytesMut) -> Bytes {
        buf.clear();
        buf.reserve(OUTPUT_HEADER_LEN + self.bytes.len());
        buf.put_u8(self.stream as u8);
        buf.put_u8(if self.end { FLAG_END } else { 0 });
        buf.put_u64(self.seq);
        buf.extend_from_slice(&self.bytes);
        buf.split().freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<OutputFrame, ProtocolError> {
        if b.len() < OUTPUT_HEADER_LEN {
            return Err(ProtocolError("output frame shorter than its header".into()));
        }
        let stream = Stream::from_u8(b.get_u8())
            .ok_or_else(|| ProtocolError("output frame has an unknown stream".into()))?;
        let flags = b.get_u8();
        let seq = b.get_u64();
        Ok(OutputFrame {
            seq,
            stream,
            end: flags & FLAG_END != 0,
            bytes: b,
        })
    }
}

/// One input message from the client: `[kind u8 = 1][seq u64 BE][bytes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFrame {
    pub seq: u64,
    pub bytes: Bytes,
}

impl InputFrame {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(INPUT_HEADER_LEN + self.bytes.len());
        b.put_u8(INPUT_KIND_DATA);
        b.put_u64(self.seq);
        b.extend_from_slice(&self.bytes);
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<InputFrame, ProtocolError> {
        if b.len() < INPUT_HEADER_LEN {
            return Err(ProtocolError("input frame shorter than its header".into()));
        }
        if b.get_u8() != INPUT_KIND_DATA {
            return Err(ProtocolError("input frame has an unknown kind".into()));
        }
        let seq = b.get_u64();
        Ok(InputFrame { seq, bytes: b })
    }
}

/// A violation of the attach protocol; its text is sent as the close reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol error: {0}")]
pub struct ProtocolError(pub String);

/// JSON control messages from the server to the client (text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every attach. `input_next` is the input sequence the
    /// server expects next: the client drops what it holds below it and
    /// resends the rest. `last_seq` is the highest output seq produced so far.
    Hello {
        session: String,
        input_next: u64,
        last_seq: u64,
        /// End of input has already been applied: further input is
        /// acknowledged and discarded, so a client need not send any.
        #[serde(default)]
        input_closed: bool,
    },
    /// The function has ended. Always the last output message of a session.
    Exit { seq: u64, exit: ExitInfo },
    /// Every input message up to and including `seq` has been written to the function.
    InputAck { seq: u64 },
    /// A heartbeat: the server sends one every heartbeat interval; the
    /// client answers with `pong`.
    Ping,
    /// The answer to the client's `ping`.
    Pong,
    /// The server is closing this connection; the session itself lives on
    /// unless the reason says otherwise.
    Closed { reason: CloseReason },
    /// The session ends soon: at `at` (seconds since the epoch), in
    /// `in_secs` seconds, for `reason`, unless its deadline is extended
    /// (`POST /v1/sessions/{token}/extend`) or, for `idle`, there is
    /// activity. Sent `deadline_warning` before the end, and again when an
    /// extend moves a deadline that was already warned of (docs/leases.md).
    Deadline {
        at: u64,
        reason: DeadlineKind,
        in_secs: u64,
    },
}

/// Which deadline a [`ServerMsg::Deadline`] warns of.
///
/// (The variants' notes are plain comments: documented variants would make
/// the schema a `oneOf` of constants, which generated clients read badly;
/// a plain `enum` of strings is what they expect.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeadlineKind {
    // The session's timeout: the hard wall-clock limit, which `extend` moves.
    Timeout,
    // The idle timeout: no client attached and no output.
    Idle,
}

impl fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadlineKind::Timeout => "timeout",
            DeadlineKind::Idle => "idle",
        })
    }
}

/// JSON control messages from the client to the server (text frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// End of input. It takes a sequence number like an input message.
    Eof { seq: u64 },
    /// Every output message up to and including `seq` has been written out
    /// by the client; the server may forget them.
    Ack { seq: u64 },
    /// A heartbeat: the server answers with `pong`. Any message counts as
    /// a sign of life, so a client that sends acks often need not ping.
    Ping,
    /// The answer to the server's `ping`.
    Pong,
    /// The client leaves on purpose (the function keeps running).
    Detach,
}

/// Why the server closed an attach connection. `Display` is the text users see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CloseReason {
    /// Another client attached with the same token. The server waits a
    /// moment for this client's final ack and `detach` before the new
    /// client starts (docs/api.md, "Takeover"), so a client should answer
    /// it with both rather than just close.
    TakenOver,
    /// `bento close` (or `POST /close`) detached this client.
    ClosedByUser,
    /// The session ended and everything was delivered and acknowledged.
    Finished,
    /// The client broke the protocol.
    Protocol { message: String },
    /// The client did not keep up with output and its queue filled.
    SlowClient,
    /// The peer stopped answering heartbeats.
    HeartbeatTimeout,
    /// The session was reaped or removed while attached.
    SessionGone,
    /// The controller is shutting down; reconnect later.
    ServerShutdown,
    /// The key this connection was opened with was revoked.
    KeyRevoked,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::TakenOver => write!(f, "another client attached to this session"),
            CloseReason::ClosedByUser => write!(f, "detached by `bento close`"),
            CloseReason::Finished => write!(f, "session finished"),
            CloseReason::Protocol { message } => write!(f, "protocol error: {message}"),
            CloseReason::SlowClient => write!(f, "client too slow to keep up with output"),
            CloseReason::HeartbeatTimeout => write!(f, "connection silent for too long"),
            CloseReason::SessionGone => write!(f, "session no longer exists"),
            CloseReason::ServerShutdown => write!(f, "server is shutting down"),
            CloseReason::KeyRevoked => write!(f, "the API key of this connection was revoked"),
        }
    }
}

/// Why a function ended. `Display` is the text users see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitReason {
    /// The process exited by itself with this code.
    Exited { code: i64 },
    /// The process was killed by a signal it did not handle.
    Signaled { signal: i64 },
    /// The kernel killed it for exceeding its memory limit.
    OomKilled,
    /// It ran past its wall-clock timeout.
    Timeout,
    /// It went `after` seconds with no client attached and no output (its
    /// idle timeout).
    Idle { after: u64 },
    /// A user killed it (`bento kill`).
    Killed,
    /// A transient session's client was gone longer than the grace period.
    Abandoned,
    /// It produced more unread output than the session may hold.
    OutputCap,
    /// It wrote bytes to the frame stream that are not valid frames.
    ProtocolError { message: String },
    /// Its container could not be created or started.
    StartFailed { message: String },
    /// The controller lost track of its container (removed behind our back).
    Lost { message: String },
    /// The node that ran it went down (a cluster engine): the output it
    /// wrote up to then is kept, the rest is gone.
    NodeLost { node: String },
    /// A fork whose replay did not reproduce its parent's output, around
    /// the parent's input `input` (the function is not deterministic).
    Diverged { input: u64 },
}

impl ExitReason {
    /// The exit code the CLI uses for this reason: the function's own code,
    /// or a conventional one (as `timeout(1)` and shells use) otherwise.
    pub fn cli_exit_code(&self) -> i32 {
        match self {
            ExitReason::Exited { code } => i32::try_from(*code).unwrap_or(1),
            ExitReason::Signaled { signal } => 128 + i32::try_from(*signal).unwrap_or(0),
            ExitReason::OomKilled | ExitReason::Killed | ExitReason::Abandoned => 137,
            ExitReason::Timeout | ExitReason::Idle { .. } => 124,
            ExitReason::StartFailed { .. } => 125,
            ExitReason::OutputCap
            | ExitReason::ProtocolError { .. }
            | ExitReason::Lost { .. }
            | ExitReason::NodeLost { .. }
            | ExitReason::Diverged { .. } => 1,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, ExitReason::Exited { code: 0 })
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited { code } => write!(f, "exited with code {code}"),
            ExitReason::Signaled { signal } => write!(f, "killed by signal {signal}"),
            ExitReason::OomKilled => write!(f, "killed: out of memory"),
            ExitReason::Timeout => write!(f, "killed: timed out"),
            ExitReason::Idle { after } => write!(
                f,
                "idle for {}: no client attached and no output",
                crate::wire::duration::span(*after)
            ),
            ExitReason::Killed => write!(f, "killed by user"),
            ExitReason::Abandoned => write!(f, "killed: transient session had no client"),
            ExitReason::OutputCap => write!(f, "killed: output cap reached"),
            ExitReason::ProtocolError { message } => {
                write!(f, "killed: bad output from function ({message})")
            }
            ExitReason::StartFailed { message } => write!(f, "failed to start: {message}"),
            ExitReason::Lost { message } => write!(f, "lost: {message}"),
            ExitReason::NodeLost { node } => write!(
                f,
                "lost: node {node}, which ran it, went down (its output up to then is kept)"
            ),
            ExitReason::Diverged { input } => write!(
                f,
                "killed: the fork's replay differed from its parent's output by input {input} \
                 (the function is not deterministic)"
            ),
        }
    }
}

/// How a session ended, as reported by the API and in the `exit` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExitInfo {
    pub reason: ExitReason,
    /// The exit code the CLI exits with (see [`ExitReason::cli_exit_code`]).
    pub code: i32,
    /// `reason` in words.
    pub message: String,
    /// What the session used, as the engine measured it (absent from
    /// controllers that do not measure, and when no sample was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl From<ExitReason> for ExitInfo {
    fn from(reason: ExitReason) -> Self {
        ExitInfo {
            code: reason.cli_exit_code(),
            message: reason.to_string(),
            reason,
            usage: None,
        }
    }
}

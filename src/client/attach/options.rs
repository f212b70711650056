//! [`AttachOptions`]: how an attachment behaves.

use super::input::InputLimits;
use std::time::Duration;

/// How an attachment behaves. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Ask for output after this seq on the first connection (0: everything
    /// the server still holds).
    pub after: u64,
    /// Reconnect after transport failures (default true).
    pub reconnect: bool,
    /// First reconnect delay; it doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Stop reconnecting after an outage this long (`None`: never).
    pub give_up_after: Option<Duration>,
    /// Ack written output at most this long after it was written...
    pub ack_interval: Duration,
    /// ...or as soon as this many messages are written. The server keeps
    /// output it has not spooled yet in its memory window (4 MiB by
    /// default); output acknowledged while it is still there never touches
    /// its disk, so the default, 16, acks a stream of 64 KiB messages every
    /// MiB.
    pub ack_every: u64,
    /// Bounds of the unacknowledged input; sending waits when they are reached.
    pub input_limits: InputLimits,
    /// How often the client pings the server.
    pub heartbeat_interval: Duration,
    /// Silence after which the connection counts as dead.
    pub heartbeat_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            after: 0,
            reconnect: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            give_up_after: Some(Duration::from_secs(600)),
            ack_interval: Duration::from_millis(50),
            ack_every: 16,
            input_limits: InputLimits::default(),
            // The server pings every few seconds too; a connection with no
            // word for 20s is dead even if TCP has not noticed.
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
        }
    }
}

//! The driver protocol: frames between the controller and the driver inside
//! a function's container (`docs/driver.md`).
//!
//! - The constants both sides must agree on live here, and only here; the
//!   Python side (`driver/_bento_wire.py`) is checked against them by a test.
//! - [`Kind`] names every frame kind; [`FromDriver`] and [`ToDriver`] are
//!   the messages of each direction.
//! - The codec ([`Decoder`], [`encode`]) frames bytes: the bounded decoder over the
//!   container's stdout and the encoders for its stdin.

mod codec;
mod messages;

pub use codec::{encode, encode_header, encode_message, Decoder, Frame, FrameError, Header};
pub use messages::{
    write, write_frames, CheckCode, CheckStart, EncodeError, FromDriver, Start, ToDriver,
};

/// Every frame starts with this many bytes of header.
pub const HEADER_LEN: usize = 8;
/// The largest payload a frame may carry. Longer messages are chunked.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The header flag on the last frame of a message.
pub const FLAG_END: u8 = 1;
/// RESUME's nonce, which marks the driver's SYNC in a stream joined mid-frame.
pub const NONCE_LEN: usize = 16;
/// SYNC's payload: nonce, offset, inputs received, inputs consumed.
const SYNC_LEN: usize = NONCE_LEN + 24;
/// The largest START message (the code and its arguments as JSON).
pub const MAX_START: usize = 4 * MAX_PAYLOAD;

/// Output the driver may hold unacknowledged (START's `window`).
pub const DRIVER_WINDOW: u64 = 8 << 20;
/// Inputs the driver may hold unconsumed (START's `max_inputs`).
pub const MAX_INPUTS_IN_FLIGHT: u64 = 64;
/// Their payload bytes (START's `max_input_bytes`).
pub const MAX_INPUT_BYTES_IN_FLIGHT: u64 = 8 << 20;

/// Frame kinds. Kinds below 16 come from the driver, the rest go to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A piece of a `send()` message. Data, stdout and stderr frames are
    /// *retransmittable*: the driver keeps them until acknowledged, and
    /// their sizes (header included) make up the stream offsets.
    Data = 1,
    Stdout = 2,
    Stderr = 3,
    /// The driver's answer to RESUME: nonce, offset, inputs received, consumed.
    Sync = 4,
    /// Inputs the function has consumed so far (u64), for input flow control.
    Credit = 5,
    /// The driver has started and waits for START (empty; sent once, before
    /// anything else, and not part of the stream offsets). The warm pool
    /// hands out a container only after it.
    Ready = 6,
    /// The code to run, as JSON ([`Start`]); or a compile-only check.
    Start = 16,
    Input = 17,
    /// End of input.
    Eof = 18,
    /// Output before this offset (u64) is durable here: the driver may forget it.
    Ack = 19,
    /// After (re)attaching: offset (u64) and a 16-byte nonce; the driver
    /// answers with SYNC and retransmits everything from the offset.
    Resume = 20,
}

impl Kind {
    /// Every kind, for tests that compare both sides of the protocol.
    pub const ALL: [Kind; 11] = [
        Kind::Data,
        Kind::Stdout,
        Kind::Stderr,
        Kind::Sync,
        Kind::Credit,
        Kind::Ready,
        Kind::Start,
        Kind::Input,
        Kind::Eof,
        Kind::Ack,
        Kind::Resume,
    ];

    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// A kind the driver writes (rather than reads).
    pub fn is_from_driver(self) -> bool {
        (self as u8) < 16
    }

    /// The name `docs/driver.md` and the Python driver use (`KIND_` + this).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Data => "DATA",
            Kind::Stdout => "STDOUT",
            Kind::Stderr => "STDERR",
            Kind::Sync => "SYNC",
            Kind::Credit => "CREDIT",
            Kind::Ready => "READY",
            Kind::Start => "START",
            Kind::Input => "INPUT",
            Kind::Eof => "EOF",
            Kind::Ack => "ACK",
            Kind::Resume => "RESUME",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The driver's SYNC frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync {
    pub offset: u64,
    pub inputs_received: u64,
    pub inputs_consumed: u64,
}

#[cfg(test)]
mod tests;

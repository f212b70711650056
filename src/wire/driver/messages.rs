//! The messages of each direction, typed: what the driver says
//! ([`FromDriver`], decoded from one frame) and what the controller says
//! ([`ToDriver`], encoded as one or more frames).

use bytes::Bytes;
use serde::Serialize;
use std::pin::Pin;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::codec::{encode, encode_message, Frame, FrameError};
use super::{
    Kind, DRIVER_WINDOW, MAX_INPUTS_IN_FLIGHT, MAX_INPUT_BYTES_IN_FLIGHT, MAX_START, NONCE_LEN,
};
use crate::config::env::Env;
use crate::wire::api::Stream;

/// One frame from the driver, as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDriver {
    /// A piece of output: of a `send()` message (`end` on its last piece),
    /// or of the function's stdout or stderr.
    Output {
        stream: Stream,
        end: bool,
        payload: Bytes,
    },
    /// Inputs the function has consumed so far.
    Credit(u64),
    /// The driver has started and waits for START.
    Ready,
    /// A SYNC frame. Only the one that answers RESUME means anything, and
    /// [`Decoder::seek_sync`](super::Decoder::seek_sync) finds that one by
    /// its nonce; any other (which only the function could forge) is noise.
    Sync,
}

impl TryFrom<Frame> for FromDriver {
    type Error = FrameError;

    fn try_from(f: Frame) -> Result<FromDriver, FrameError> {
        let stream = match f.kind {
            Kind::Data => Stream::Data,
            Kind::Stdout => Stream::Stdout,
            Kind::Stderr => Stream::Stderr,
            Kind::Credit => {
                let count = <[u8; 8]>::try_from(&f.payload[..])
                    .map_err(|_| FrameError::BadPayload(Kind::Credit, f.payload.len()))?;
                return Ok(FromDriver::Credit(u64::from_be_bytes(count)));
            }
            Kind::Ready => return Ok(FromDriver::Ready),
            Kind::Sync => return Ok(FromDriver::Sync),
            // The decoder refuses these kinds from the driver.
            other => return Err(FrameError::UnknownKind(other as u8)),
        };
        Ok(FromDriver::Output {
            stream,
            end: f.end,
            payload: f.payload,
        })
    }
}

/// What a function is started with: START's JSON (`docs/driver.md`).
#[derive(Debug, Serialize)]
pub struct Start<'a> {
    pub code: &'a str,
    pub args: &'a [String],
    /// The name tracebacks show for the function's source.
    pub filename: &'a str,
    /// Output the driver may hold unacknowledged.
    pub window: u64,
    /// Inputs, and their bytes, the driver may hold unconsumed.
    pub max_inputs: u64,
    pub max_input_bytes: u64,
    /// Variables the driver sets in `os.environ` before the function runs
    /// (left out when none). Its `Debug` shows names only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<&'a Env>,
}

impl<'a> Start<'a> {
    /// A START with this controller's windows.
    pub fn new(code: &'a str, args: &'a [String], filename: &'a str) -> Start<'a> {
        Start {
            code,
            args,
            filename,
            window: DRIVER_WINDOW,
            max_inputs: MAX_INPUTS_IN_FLIGHT,
            max_input_bytes: MAX_INPUT_BYTES_IN_FLIGHT,
            env: None,
        }
    }

    /// The same START, with the function's environment.
    pub fn with_env(self, env: &'a Env) -> Start<'a> {
        Start {
            env: (!env.is_empty()).then_some(env),
            ..self
        }
    }
}

/// A compile-only START: the driver answers with one DATA message saying
/// whether the code compiles, and runs nothing. The code sits inside
/// `"check"`, so that a driver from before the check finds no `"code"` and
/// refuses the START instead of running it.
#[derive(Debug, Serialize)]
pub struct CheckStart<'a> {
    pub check: CheckCode<'a>,
}

#[derive(Debug, Serialize)]
pub struct CheckCode<'a> {
    pub code: &'a str,
    pub filename: &'a str,
}

impl<'a> CheckStart<'a> {
    pub fn new(code: &'a str, filename: &'a str) -> CheckStart<'a> {
        CheckStart {
            check: CheckCode { code, filename },
        }
    }
}

/// One message to the driver.
#[derive(Debug)]
pub enum ToDriver<'a> {
    Start(Start<'a>),
    Check(CheckStart<'a>),
    Input(&'a [u8]),
    /// End of input.
    Eof,
    /// Output before this stream offset is durable: the driver may forget it.
    Ack(u64),
    /// Retransmit from this offset, after a SYNC marked with the nonce.
    Resume {
        offset: u64,
        nonce: [u8; NONCE_LEN],
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the code and its arguments come to {0} bytes, more than the 4 MiB a START may hold")]
    StartTooLarge(usize),
    #[error("cannot encode START: {0}")]
    Json(#[from] serde_json::Error),
}

impl ToDriver<'_> {
    /// The message's frames, each at most [`MAX_PAYLOAD`](super::MAX_PAYLOAD).
    pub fn encode(&self) -> Result<Vec<Bytes>, EncodeError> {
        Ok(match self {
            ToDriver::Start(start) => start_frames(serde_json::to_vec(start)?)?,
            ToDriver::Check(check) => start_frames(serde_json::to_vec(check)?)?,
            ToDriver::Input(bytes) => encode_message(Kind::Input, bytes),
            ToDriver::Eof => encode_message(Kind::Eof, &[]),
            ToDriver::Ack(offset) => vec![encode(Kind::Ack, false, &offset.to_be_bytes())],
            ToDriver::Resume { offset, nonce } => {
                let mut payload = offset.to_be_bytes().to_vec();
                payload.extend_from_slice(nonce);
                encode_message(Kind::Resume, &payload)
            }
        })
    }
}

fn start_frames(json: Vec<u8>) -> Result<Vec<Bytes>, EncodeError> {
    if json.len() > MAX_START {
        return Err(EncodeError::StartTooLarge(json.len()));
    }
    Ok(encode_message(Kind::Start, &json))
}

/// Writes one message to the driver and flushes.
pub async fn write(
    w: &mut Pin<Box<dyn AsyncWrite + Send>>,
    msg: &ToDriver<'_>,
) -> std::io::Result<()> {
    let frames = msg.encode().map_err(std::io::Error::other)?;
    write_frames(w, &frames).await
}

/// Writes frames encoded earlier (see [`ToDriver::encode`]) and flushes.
pub async fn write_frames(
    w: &mut Pin<Box<dyn AsyncWrite + Send>>,
    frames: &[Bytes],
) -> std::io::Result<()> {
    for frame in frames {
        w.write_all(frame).await?;
    }
    w.flush().await
}

//! [`Link`]: the state of an attachment's task that lasts from one
//! connection to the next. `conn.rs` serves a connection with it, and
//! `reconnect.rs` carries it over to the next one.

use super::acks::AckBatcher;
use super::event::Event;
use super::input::InputShared;
use super::options::AttachOptions;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// What the handles ask of the task.
pub(super) enum Cmd {
    Detach(oneshot::Sender<()>),
}

/// The channels to the [`Attachment`](super::Attachment) and its handles,
/// and how far output got.
pub(super) struct Link {
    pub(super) opts: AttachOptions,
    pub(super) input: Arc<InputShared>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) written: watch::Receiver<u64>,
    pub(super) cmds: mpsc::Receiver<Cmd>,
    /// Highest output seq received; output at or below it is a duplicate.
    pub(super) last_received: u64,
    /// Highest seq handed to the consumer (output or the exit): what it
    /// is to write out before a takeover's final ack.
    pub(super) delivered: u64,
    pub(super) acks: AckBatcher,
    pub(super) exit_received: bool,
    /// Detachers to answer once the attachment has ended.
    pub(super) detach_replies: Vec<oneshot::Sender<()>>,
}

impl Link {
    pub(super) fn new(
        opts: AttachOptions,
        input: Arc<InputShared>,
        events: mpsc::Sender<Event>,
        written: watch::Receiver<u64>,
        cmds: mpsc::Receiver<Cmd>,
        after: u64,
    ) -> Self {
        let acks = AckBatcher::new(opts.ack_interval, opts.ack_every);
        Link {
            opts,
            input,
            events,
            written,
            cmds,
            last_received: after,
            delivered: 0,
            acks,
            exit_received: false,
            detach_replies: Vec::new(),
        }
    }
}

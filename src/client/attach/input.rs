//! The client's side of the input stream: messages it has numbered but the
//! server has not yet acknowledged.
//!
//! Input must survive a dropped connection: the server tells, in `Hello`,
//! which sequence it expects next, and everything from there on is sent
//! again. So every message stays here until an `InputAck` covers it, and the
//! buffer is bounded so that a producer faster than the server waits instead
//! of growing memory without end.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// The largest input message the server accepts (see `docs/api.md`); a
/// bigger one would be refused at the WebSocket layer, and resent after
/// every reconnect, forever.
pub const MAX_INPUT_MESSAGE: usize = crate::wire::api::MAX_INPUT_BYTES;

/// Bounds of the unacknowledged input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_messages: 1024,
            max_bytes: 16 << 20,
        }
    }
}

/// One numbered input item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InputItem {
    Data(Bytes),
    Eof,
}

impl InputItem {
    fn len(&self) -> usize {
        match self {
            InputItem::Data(b) => b.len(),
            InputItem::Eof => 0,
        }
    }
}

/// Why an input message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input already ended (EOF was sent)")]
    Closed,
    #[error("the attachment has ended")]
    Ended,
    #[error("an input message of {0} bytes is over the limit of {MAX_INPUT_MESSAGE}")]
    TooLarge(usize),
}

/// Result of [`InputBuffer::push`].
#[derive(Debug, PartialEq, Eq)]
enum Push {
    Queued(u64),
    /// No room: the item is handed back so the caller can wait and retry.
    Full(InputItem),
    Rejected(InputError),
}

/// The unacknowledged input, in sequence order, and where sending stands.
#[derive(Debug)]
pub(super) struct InputBuffer {
    limits: InputLimits,
    items: VecDeque<(u64, InputItem)>,
    bytes: usize,
    next_seq: u64,
    /// Items at index `< sent` went out on the current connection.
    sent: usize,
    eof_queued: bool,
    ended: bool,
}

impl InputBuffer {
    /// `next_seq` is the server's `input_next` on the first connection: a
    /// new client continues the numbering where earlier clients left it.
    pub(super) fn new(limits: InputLimits, next_seq: u64) -> Self {
        InputBuffer {
            limits,
            items: VecDeque::new(),
            bytes: 0,
            next_seq: next_seq.max(1),
            sent: 0,
            eof_queued: false,
            ended: false,
        }
    }

    fn push(&mut self, item: InputItem) -> Push {
        if item.len() > MAX_INPUT_MESSAGE {
            return Push::Rejected(InputError::TooLarge(item.len()));
        }
        if self.ended {
            return Push::Rejected(InputError::Ended);
        }
        if self.eof_queued {
            return Push::Rejected(InputError::Closed);
        }
        // A message larger than the whole byte budget (when the budget is
        // set below the message limit) still goes through, alone, rather
        // than blocking forever.
        let fits = self.items.is_empty()
            || (self.items.len() < self.limits.max_messages
                && self.bytes + item.len() <= self.limits.max_bytes);
        if !fits {
            return Push::Full(item);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.eof_queued = item == InputItem::Eof;
        self.bytes += item.len();
        self.items.push_back((seq, item));
        Push::Queued(seq)
    }

    /// The next item to transmit on the current connection, if any.
    pub(super) fn next_unsent(&mut self) -> Option<(u64, InputItem)> {
        let item = self.items.get(self.sent).cloned()?;
        self.sent += 1;
        Some(item)
    }

    /// The server has applied everything up to `seq`. Returns whether room was freed.
    fn ack(&mut self, seq: u64) -> bool {
        let mut freed = false;
        while let Some((s, item)) = self.items.front() {
            if *s > seq {
                break;
            }
            self.bytes -= item.len();
            self.items.pop_front();
            self.sent = self.sent.saturating_sub(1);
            freed = true;
        }
        freed
    }

    /// A new connection: the server expects `input_next`; everything before
    /// it was applied, everything from it on must be sent again.
    fn resume(&mut self, input_next: u64) -> bool {
        let freed = self.ack(input_next.saturating_sub(1));
        self.sent = 0;
        // Another client may have sent input while we were away; our own
        // numbering must not fall behind what the server already applied.
        self.next_seq = self.next_seq.max(input_next);
        freed
    }

    fn end(&mut self) {
        self.ended = true;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }
}

/// The buffer shared by input senders and the connection task.
#[derive(Debug)]
pub(super) struct InputShared {
    buf: Mutex<InputBuffer>,
    /// Wakes the connection task: there is something to send.
    pub(super) data: Notify,
    /// Wakes waiting senders: room was freed, or the attachment ended.
    space: Notify,
}

impl InputShared {
    pub(super) fn new(buf: InputBuffer) -> Self {
        InputShared {
            buf: Mutex::new(buf),
            data: Notify::new(),
            space: Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, InputBuffer> {
        // A panic while holding this lock cannot leave the buffer half
        // updated in a way that matters more than losing the attachment.
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn ack(&self, seq: u64) {
        if self.lock().ack(seq) {
            self.space.notify_waiters();
        }
    }

    pub(super) fn resume(&self, input_next: u64) {
        if self.lock().resume(input_next) {
            self.space.notify_waiters();
        }
    }

    pub(super) fn end(&self) {
        self.lock().end();
        self.space.notify_waiters();
    }

    /// Queues `item`, waiting while the buffer is full.
    pub(super) async fn push(&self, mut item: InputItem) -> Result<u64, InputError> {
        loop {
            // Register interest before looking, so a wake-up between the
            // check and the await is not lost.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pushed = self.lock().push(item);
            match pushed {
                Push::Queued(seq) => {
                    self.data.notify_one();
                    return Ok(seq);
                }
                Push::Rejected(e) => return Err(e),
                Push::Full(back) => item = back,
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &'static str) -> InputItem {
        InputItem::Data(Bytes::from_static(s.as_bytes()))
    }

    fn limits(max_messages: usize, max_bytes: usize) -> InputLimits {
        InputLimits {
            max_messages,
            max_bytes,
        }
    }

    #[test]
    fn numbers_continue_from_server() {
        let mut b = InputBuffer::new(InputLimits::default(), 5);
        assert_eq!(b.push(data("a")), Push::Queued(5));
        assert_eq!(b.push(InputItem::Eof), Push::Queued(6));
        assert_eq!(b.push(data("b")), Push::Rejected(InputError::Closed));
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut b = InputBuffer::new(limits(2, 100), 1);
        assert_eq!(b.push(data("a")), Push::Queued(1));
        assert_eq!(b.push(data("b")), Push::Queued(2));
        assert_eq!(b.push(data("c")), Push::Full(data("c")));
        b.ack(1);
        assert_eq!(b.push(data("c")), Push::Queued(3));

        let mut b = InputBuffer::new(limits(10, 4), 1);
        assert_eq!(b.push(data("abc")), Push::Queued(1));
        assert_eq!(b.push(data("de")), Push::Full(data("de")));
        b.ack(1);
        assert_eq!(b.push(data("de")), Push::Queued(2));
    }

    #[test]
    fn oversized_message_goes_alone() {
        let mut b = InputBuffer::new(limits(10, 2), 1);
        assert_eq!(b.push(data("toolong")), Push::Queued(1));
        assert_eq!(b.push(data("x")), Push::Full(data("x")));
    }

    #[test]
    fn messages_over_the_server_limit_are_refused() {
        let mut b = InputBuffer::new(InputLimits::default(), 1);
        let big = InputItem::Data(Bytes::from(vec![0u8; MAX_INPUT_MESSAGE + 1]));
        assert_eq!(
            b.push(big),
            Push::Rejected(InputError::TooLarge(MAX_INPUT_MESSAGE + 1))
        );
        let max = InputItem::Data(Bytes::from(vec![0u8; MAX_INPUT_MESSAGE]));
        assert_eq!(b.push(max), Push::Queued(1));
    }

    #[test]
    fn sends_each_item_once_per_connection() {
        let mut b = InputBuffer::new(InputLimits::default(), 1);
        b.push(data("a"));
        b.push(data("b"));
        assert_eq!(b.next_unsent(), Some((1, data("a"))));
        b.push(data("c"));
        assert_eq!(b.next_unsent(), Some((2, data("b"))));
        b.ack(1);
        assert_eq!(b.next_unsent(), Some((3, data("c"))));
        assert_eq!(b.next_unsent(), None);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn resume_drops_applied_and_resends_rest() {
        let mut b = InputBuffer::new(InputLimits::default(), 1);
        for s in ["a", "b", "c"] {
            b.push(data(s));
        }
        b.push(InputItem::Eof);
        while b.next_unsent().is_some() {}
        // The server applied 1 and 2 before the connection dropped.
        b.resume(3);
        assert_eq!(b.next_unsent(), Some((3, data("c"))));
        assert_eq!(b.next_unsent(), Some((4, InputItem::Eof)));
        assert_eq!(b.next_unsent(), None);
        b.ack(4);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn resume_never_numbers_below_server() {
        let mut b = InputBuffer::new(InputLimits::default(), 1);
        b.resume(10);
        assert_eq!(b.push(data("a")), Push::Queued(10));
    }

    #[tokio::test]
    async fn full_buffer_waits_for_ack() {
        let shared = std::sync::Arc::new(InputShared::new(InputBuffer::new(limits(1, 100), 1)));
        assert_eq!(shared.push(data("a")).await, Ok(1));
        let s2 = shared.clone();
        let waiter = tokio::spawn(async move { s2.push(data("b")).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        shared.ack(1);
        assert_eq!(waiter.await.ok(), Some(Ok(2)));
    }

    #[tokio::test]
    async fn ending_releases_waiters() {
        let shared = std::sync::Arc::new(InputShared::new(InputBuffer::new(limits(1, 100), 1)));
        assert_eq!(shared.push(data("a")).await, Ok(1));
        let s2 = shared.clone();
        let waiter = tokio::spawn(async move { s2.push(data("b")).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        shared.end();
        assert_eq!(waiter.await.ok(), Some(Err(InputError::Ended)));
    }
}

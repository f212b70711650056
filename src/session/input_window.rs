//! What the stdin writer knows of the input in the driver's hands: how many
//! inputs it has written, how many the function has consumed (the driver's
//! CREDIT frames), and the sizes of those still unconsumed, for input flow
//! control (`MAX_INPUTS_IN_FLIGHT`, `MAX_INPUT_BYTES_IN_FLIGHT`).
//!
//! A credit is a number the function can forge: it writes to the same fd
//! as the driver. So every credit is checked against what the controller
//! itself knows before it changes anything. A credit that goes backwards,
//! or claims more inputs consumed than were ever written, is a protocol
//! error that ends that one session; taking a credit in is one bounded
//! operation, never a step per claimed input (a forged 2^64−1 once made the
//! writer loop without yielding and hung the whole controller).

use std::collections::VecDeque;

use crate::wire::driver::{MAX_INPUTS_IN_FLIGHT, MAX_INPUT_BYTES_IN_FLIGHT};

/// A credit the controller cannot believe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("credit went backwards: {now} inputs consumed after {before}")]
    Backwards { before: u64, now: u64 },
    #[error("credit claims {now} inputs consumed, but only {sent} were written")]
    Ahead { sent: u64, now: u64 },
}

#[derive(Debug, Default)]
pub struct InputWindow {
    /// Inputs written to the driver in total, end of input included.
    sent: u64,
    /// Inputs the function has consumed, as credited.
    consumed: u64,
    /// Unconsumed inputs a resumed driver already held: their sizes are not
    /// known here, so they count as empty. They are always the oldest.
    unknown: u64,
    /// Sizes of the unconsumed inputs written since, oldest first. At most
    /// [`MAX_INPUTS_IN_FLIGHT`] long: nothing is written without room.
    sizes: VecDeque<u64>,
    /// The sum of `sizes`.
    bytes: u64,
}

impl InputWindow {
    /// The window of a driver that has received `sent` inputs and consumed
    /// `consumed` of them (0 and 0 for a new session). The caller has
    /// checked `consumed <= sent`; a larger `consumed` is taken as `sent`.
    pub fn new(sent: u64, consumed: u64) -> InputWindow {
        let consumed = consumed.min(sent);
        InputWindow {
            sent,
            consumed,
            unknown: sent - consumed,
            sizes: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Inputs written and not consumed yet.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.consumed
    }

    /// Bytes of those inputs, as far as they are known.
    #[cfg(test)]
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes
    }

    #[cfg(test)]
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the driver has room for another input. Not while a resumed
    /// driver still holds inputs of unknown size: counted as empty, they
    /// could hide megabytes, and the driver refuses input past its byte
    /// bound. Being the oldest, they are consumed first anyway.
    pub fn has_room(&self) -> bool {
        self.unknown == 0
            && self.in_flight() < MAX_INPUTS_IN_FLIGHT
            && self.bytes < MAX_INPUT_BYTES_IN_FLIGHT
    }

    /// One more input of `size` bytes has been written.
    pub fn written(&mut self, size: u64) {
        self.sent = self.sent.saturating_add(1);
        self.sizes.push_back(size);
        self.bytes = self.bytes.saturating_add(size);
    }

    /// The driver says `now` inputs have been consumed in all. Checked
    /// against what was written; then one bounded step: the unknown inputs
    /// go first, then at most `sizes.len()` known ones.
    pub fn credit(&mut self, now: u64) -> Result<(), CreditError> {
        if now < self.consumed {
            return Err(CreditError::Backwards {
                before: self.consumed,
                now,
            });
        }
        if now > self.sent {
            return Err(CreditError::Ahead {
                sent: self.sent,
                now,
            });
        }
        let mut done = now - self.consumed;
        let from_unknown = done.min(self.unknown);
        self.unknown -= from_unknown;
        done -= from_unknown;
        // sent == consumed + unknown + sizes.len(), so `done` fits.
        let n = usize::try_from(done)
            .unwrap_or(usize::MAX)
            .min(self.sizes.len());
        let freed: u64 = self.sizes.drain(..n).sum();
        self.bytes = self.bytes.saturating_sub(freed);
        self.consumed = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_free_room_in_order() {
        let mut w = InputWindow::new(0, 0);
        for size in [10, 20, 30] {
            w.written(size);
        }
        assert_eq!((w.in_flight(), w.bytes_in_flight()), (3, 60));
        assert_eq!(w.credit(2), Ok(()));
        assert_eq!((w.in_flight(), w.bytes_in_flight()), (1, 30));
        assert_eq!(w.credit(2), Ok(()), "the same credit again changes nothing");
        assert_eq!(w.credit(3), Ok(()));
        assert_eq!((w.in_flight(), w.bytes_in_flight()), (0, 0));
    }

    #[test]
    fn forged_credits_are_refused_without_changing_anything() {
        let mut w = InputWindow::new(0, 0);
        w.written(5);
        w.written(6);
        assert_eq!(
            w.credit(u64::MAX),
            Err(CreditError::Ahead {
                sent: 2,
                now: u64::MAX
            })
        );
        assert_eq!(w.credit(3), Err(CreditError::Ahead { sent: 2, now: 3 }));
        assert_eq!(w.credit(1), Ok(()));
        assert_eq!(
            w.credit(0),
            Err(CreditError::Backwards { before: 1, now: 0 })
        );
        assert_eq!(
            (w.consumed(), w.in_flight(), w.bytes_in_flight()),
            (1, 1, 6)
        );
    }

    #[test]
    fn a_resumed_window_counts_held_inputs_as_unknown() {
        // A driver that received 1000 inputs and consumed 990: ten are held,
        // of unknown size, and no room is left past the in-flight bound.
        let mut w = InputWindow::new(1000, 990);
        assert_eq!(w.in_flight(), 10);
        assert!(
            !w.has_room(),
            "no new input until the held ones are consumed"
        );
        assert_eq!(w.credit(995), Ok(()));
        assert!(!w.has_room());
        assert_eq!(w.credit(1000), Ok(()));
        assert!(w.has_room());
        w.written(7);
        assert_eq!((w.in_flight(), w.bytes_in_flight()), (1, 7));
        assert_eq!(w.credit(1001), Ok(()));
        assert_eq!((w.in_flight(), w.bytes_in_flight()), (0, 0));
        // Huge counts are one step, not a loop per input.
        let mut w = InputWindow::new(u64::MAX - 1, 0);
        assert!(!w.has_room());
        assert_eq!(w.credit(u64::MAX - 1), Ok(()));
        assert_eq!(w.in_flight(), 0);
    }
}

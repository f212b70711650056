//! Gives back to the OS the memory the allocator keeps after output has
//! streamed through the controller.
//!
//! Output passes through in chunks of up to a few hundred KiB (attach
//! stream, frame decoder, spool writes). glibc's malloc keeps what such
//! chunks leave free in its heaps, and raises its own trim threshold as it
//! goes, so a controller that has streamed a gigabyte into a detached
//! session's spool held 2-4 MiB more than an idle one although it holds
//! none of that output. So once output stops flowing (it moved in one
//! quarter-second tick and not in the next), this task asks malloc to
//! release its free pages (`malloc_trim`, well under a millisecond on a
//! heap this size). Not while it flows: the pages released would only be
//! faulted in again by the next chunks (with a trim every half second
//! while a 1 GiB stream ran, `madvise` alone was about 5 % of the
//! controller's CPU samples). On other allocators it does nothing. The
//! [frame pool](crate::mem::frame_pool)'s spare buffers are freed at the same
//! moment, for the same reason.

use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::metrics::METRICS;

const INTERVAL: Duration = Duration::from_millis(250);

pub async fn run(shutdown: CancellationToken) {
    let moved = || {
        METRICS.bytes_received.load(Ordering::Relaxed)
            + METRICS.bytes_delivered.load(Ordering::Relaxed)
    };
    let mut last = moved();
    let mut flowing = false;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = moved();
        if now != last {
            last = now;
            flowing = true;
        } else if flowing {
            flowing = false;
            // The frame pool's spare buffers first, so malloc can give
            // their pages back too.
            crate::mem::frame_pool::FRAMES.clear();
            release_free_memory();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks and releases malloc's own free
    // chunks; it takes no pointers and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

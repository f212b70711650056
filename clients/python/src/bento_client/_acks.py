"""When to acknowledge output: ``AckBatcher`` (src/client/attach/acks.rs).

Acking every message would double the messages on the socket; acking
rarely makes the server hold delivered output longer. So an ack goes out
once ``every`` messages are written, or ``interval`` after the first
unacked write, and at once for the exit (the last message)."""

from __future__ import annotations

from typing import Optional


class AckBatcher:
    def __init__(self, interval: float, every: int):
        self.interval = interval
        self.every = max(1, every)
        self.written = 0
        self.acked = 0
        self.pending_since: Optional[float] = None
        self.exit_seq: Optional[int] = None

    def mark_written(self, seq: int, now: float) -> None:
        """Everything up to ``seq`` has been handed to the user."""
        if seq <= self.written:
            return
        self.written = seq
        if self.written > self.acked and self.pending_since is None:
            self.pending_since = now

    def set_exit(self, seq: int) -> None:
        self.exit_seq = seq

    def exit_written(self) -> bool:
        return self.exit_seq is not None and self.written >= self.exit_seq

    def due(self, now: float) -> Optional[int]:
        """The seq to ack now, if one is due."""
        if self.written <= self.acked:
            return None
        by_count = self.written - self.acked >= self.every
        by_time = self.pending_since is not None and now - self.pending_since >= self.interval
        return self.written if (by_count or by_time or self.exit_written()) else None

    def deadline(self) -> Optional[float]:
        """When the pending ack falls due by time, if one is pending."""
        if self.written <= self.acked or self.pending_since is None:
            return None
        return self.pending_since + self.interval

    def sent(self, seq: int) -> None:
        self.acked = max(self.acked, seq)
        self.pending_since = None

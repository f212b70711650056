"""Bento's function API: send(), recv() and poll().

A function running in Bento talks to its client with three calls:

    send(data)  send one message: a str (sent UTF-8 encoded) or a bytes-like
                object (bytes, bytearray, memoryview)
    recv()      the next input message, as bytes, blocking until one
                arrives; None once the input has ended
    poll()      True if recv() would return without blocking

Inside a Bento container they are also builtins, so a function can use them
without importing anything; `from bento import send, recv, poll` works too.
What the function prints (stdout and stderr) reaches the client as well, in
order with its messages: send() and recv() flush both first.

They raise RuntimeError outside the Bento driver and in a process forked
from the function.  The protocol behind them is in _bento_wire (private to
Bento); see docs/driver.md.
"""

from _bento_wire import END_OF_INPUT as _END_OF_INPUT
from _bento_wire import KIND_DATA as _KIND_DATA
from _bento_wire import get_channel as _get_channel

__all__ = ["send", "recv", "poll"]


def send(data):
    """Send one message to the client.  `data` is str (sent UTF-8 encoded) or
    a bytes-like object (bytes, bytearray, memoryview)."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = data
    else:
        # The driver prints this traceback ending at the caller's line.
        raise TypeError("send() takes str or bytes, not %s" % type(data).__name__)
    channel = _get_channel()
    # Output printed before send() reaches the client before the message.
    channel.flush_output()
    channel.writer.write_message(_KIND_DATA, payload)


def recv():
    """Return the next input message as bytes, blocking until one arrives,
    or None once the input has ended (and on every call after that)."""
    channel = _get_channel()
    # Don't sit on a half-printed prompt while waiting for input.
    channel.flush_output()
    item = channel.inbox.get()
    if item is _END_OF_INPUT:
        return None
    return item


def poll():
    """True if recv() would return without blocking: a message is waiting or
    the input has ended."""
    return not _get_channel().inbox.empty()

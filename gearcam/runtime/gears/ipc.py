"""The wire between the runtime and its Gears worker processes: framed pickles of plain data only.

Both ends send `(kind, id, op, payload)` tuples over one stream socket, each framed
by an 8-byte length. Only plain data crosses (None, bool, int, float, str, bytes,
bytearray, list, tuple, dict, set): the unpickler refuses every class and function
by name, so a script that controls its worker cannot make the runtime run code by
sending it a crafted pickle. Frames and tensors travel as bytes in one copy each way.

kinds: REQUEST (expects a REPLY, FAILURE or LOST with the same id), REPLY, FAILURE (payload:
the error text), LOST (a FAILURE because the runtime lost the backing Redis meanwhile: the
worker marks the execution that asked, as it does when its own `execute()` loses Redis),
NOTICE (one-way, id 0).
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
import threading
from typing import Any

__all__ = [
    "FAILURE", "HEADER", "LOST", "MAX_FRAME", "NOTICE", "REPLY", "REQUEST", "BlockingChannel", "ChannelClosed",
    "WireError", "dumps", "loads",
]  # fmt: skip

REQUEST, REPLY, FAILURE, LOST, NOTICE = "req", "ok", "err", "lost", "note"
HEADER = struct.Struct("!Q")
# Redis' proto-max-bulk-len: no single message (a batch of frames, a tensor) is larger.
MAX_FRAME = 512 * 1024 * 1024


class WireError(Exception):
    """A frame that is too large or does not decode as plain data: the peer is broken or hostile."""


class ChannelClosed(Exception):
    """The other end went away (the worker died, or the runtime stopped)."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise WireError(f"refused to load {module}.{name}: only plain data crosses the Gears wire")


def dumps(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(body)) + body


def loads(body: bytes | bytearray | memoryview) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(body)).load()
    except WireError:
        raise
    except Exception as exc:
        raise WireError(f"undecodable frame: {exc}") from None


def frame_length(header: bytes | bytearray) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    return int(length)


class BlockingChannel:
    """The worker's end: a blocking socket, one reader thread, sends serialised by a lock."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        data = dumps(message)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None

    def _exact(self, n: int) -> bytearray:
        view = bytearray(n)
        got = 0
        while got < n:
            chunk = self._sock.recv_into(memoryview(view)[got:], n - got)
            if not chunk:
                raise ChannelClosed("the runtime closed the Gears channel")
            got += chunk
        return view

    def receive(self) -> Any:
        length = frame_length(self._exact(HEADER.size))
        return loads(self._exact(length))

"""Streams whose reader hands out the bytes the transport received, as they came.

asyncio's StreamReader appends every received chunk to one bytearray and copies each
`read()` out of it, deleting from its front: for the 32-64 KB camera frames a client
pipelines, and the replies that carry them back (a page's XREAD), that is two extra
copies of every byte and a memmove of the rest on each read (a third of the runtime's
CPU when relaying pipelined 64 KB XADDs, measured with py-spy). The runtime's RESP
parsers take chunks of any size, so this reader keeps the chunks in a queue and gives
each one out whole (split only when larger than the `n` asked for). Flow control is
StreamReader's: the transport pauses above twice `limit` bytes held, and resumes at `limit`.

A reader may instead be given a `consumer`: then every chunk is handed to it as the
transport delivers it, and `read()` only reports the end of the stream. A link that
parses replies needs no task woken per chunk that way (a future, a task step and a loop
turn for every reply a one-at-a-time client waits for).

A server's readers can also be filled in place: while their owner offers a buffer (`into`,
the rest of a large argument the request parser has allocated), the socket is read
straight into it and the owner is told how much came (`filled`); nothing is queued and no
task wakes. So a tensor sent by a client is copied once, by the kernel, into the bytes
object the command gets, instead of into the event loop's read buffer, then out of it,
then into the argument (13 % of the event loop's time for a 2.4 MB tensor, measured with
py-spy). Otherwise the socket is read into one scratch buffer per thread, and the bytes
are queued as before (the copy the event loop would have made). A read that fills the
scratch buffer pauses the transport until its bytes are read: libuv would otherwise read
on (up to 32 full buffers) before the owner has seen the command that starts a large
argument, and a pipelined TENSORSET's blob would be queued and copied twice after all.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "ChunkReader",
    "Connected",
    "open_connection",
    "open_unix_connection",
    "start_server",
    "start_server_on",
    "start_unix_server",
]

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ChunkReader(asyncio.StreamReader):
    """A StreamReader whose `read(n)` returns the next received chunk (at most `n` bytes), without copying it."""

    # StreamReader's own state and helpers (CPython 3.11-3.13), which typeshed does not declare.
    _eof: bool
    _paused: bool
    _limit: int
    _transport: Any
    _exception: BaseException | None
    _wakeup_waiter: Callable[[], None]
    _wait_for_data: Callable[[str], Awaitable[None]]

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit)
        self._chunks: deque[bytes] = deque()
        self._held = 0
        # Takes each chunk in the transport's callback; it must not raise (see the module's docstring).
        self.consumer: Callable[[bytes], None] | None = None
        # Where the next bytes may be received in place, and what to tell once they are there (servers'
        # readers only; see the module's docstring). Both are called in the transport's callback;
        # `into` is cleared once it offers nothing, and its owner sets it again when it has a buffer.
        self.into: Callable[[], memoryview | None] | None = None
        self.filled: Callable[[int], None] | None = None
        # Offered each chunk in the transport's callback while nothing is queued; returns the part it
        # did not take, which is queued for read() as usual (servers' readers: the plain relay, see
        # connection.py). It must not raise.
        self.take: Callable[[bytes], bytes] | None = None
        self._holding = False  # see hold()
        self._until_read = False  # see _InPlaceProtocol.buffer_updated

    def feed_data(self, data: Any) -> None:
        assert not self._eof, "feed_data after feed_eof"
        if not data:
            return
        if self.consumer is not None and not self._chunks:
            self.consumer(bytes(data))
            return
        data = bytes(data)  # no copy of bytes; a view of the scratch buffer is copied out
        if self.take is not None and not self._chunks:
            data = self.take(data)
            if not data:
                return
        self._chunks.append(data)
        self._held += len(data)
        self._wakeup_waiter()
        if self._transport is not None and not self._paused and self._held > 2 * self._limit:
            try:
                self._transport.pause_reading()
            except NotImplementedError:
                self._transport = None
            else:
                self._paused = True

    def _maybe_resume_transport(self) -> None:
        if self._paused and self._held <= self._limit and not self._holding and not self._until_read:
            self._paused = False
            self._transport.resume_reading()

    def hold(self) -> None:
        """Stop reading until `release()`, whatever is queued: for a `take` that passed on bytes that wait
        to leave elsewhere (the plain relay's, for a slow Redis)."""
        self._holding = True
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def release(self) -> None:
        self._holding = False
        self._maybe_resume_transport()

    def pause_until_read(self) -> None:
        """Stop reading until every queued chunk has been read: so that the owner sees them, and can offer
        a buffer (`into`) for what follows, before the transport reads on into the scratch buffer."""
        self._until_read = True
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def at_eof(self) -> bool:
        return bool(self._eof) and not self._chunks

    async def read(self, n: int = -1) -> bytes:
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if not self._chunks and not self._eof:
            await self._wait_for_data("read")
        if not self._chunks:
            return b""
        data = self._chunks.popleft()
        if 0 < n < len(data):
            self._chunks.appendleft(data[n:])
            data = data[:n]
        self._held -= len(data)
        if self._until_read and not self._chunks:
            self._until_read = False
        self._maybe_resume_transport()
        return data

    async def readexactly(self, n: int) -> bytes:  # not used on these streams: refuse rather than misread
        raise NotImplementedError("ChunkReader hands out chunks: use read()")

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        raise NotImplementedError("ChunkReader hands out chunks: use read()")


_SCRATCH_SIZE = 256 * 1024  # as uvloop's own read buffer
_scratch = threading.local()  # one read buffer per event loop's thread: each read is copied out at once


class _InPlaceProtocol(asyncio.BufferedProtocol):
    """A StreamReaderProtocol that reads into buffers: its reader's offer (`into`), else a scratch buffer.

    uvloop reads into a buffer only for protocols that are not `asyncio.Protocol`s, so this one
    holds a StreamReaderProtocol and hands it everything else (flow control, end of stream,
    the StreamWriter and the connected callback).
    """

    def __init__(self, limit: int, connected: Connected) -> None:
        self._reader = ChunkReader(limit)
        self._streams = asyncio.StreamReaderProtocol(self._reader, connected)
        self._placing = False
        buffer = getattr(_scratch, "buffer", None)
        if buffer is None:
            buffer = _scratch.buffer = memoryview(bytearray(_SCRATCH_SIZE))
        self._buffer: memoryview = buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._streams.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._streams.connection_lost(exc)

    def pause_writing(self) -> None:
        self._streams.pause_writing()

    def resume_writing(self) -> None:
        self._streams.resume_writing()

    def eof_received(self) -> bool | None:
        return self._streams.eof_received()

    def get_buffer(self, sizehint: int) -> memoryview:
        reader = self._reader
        into = reader.into
        # Only once every byte received before has been handed on, so the owner's offer is current.
        if into is not None and not reader._chunks:
            view = into()
            if view is not None:
                self._placing = True
                return view
            reader.into = None  # nothing to fill now: the owner sets it again when there is
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._placing:
            self._placing = False
            assert self._reader.filled is not None
            self._reader.filled(nbytes)
        else:
            reader = self._reader
            reader.feed_data(self._buffer[:nbytes])  # which copies it out
            if nbytes == len(self._buffer) and reader._chunks and reader.filled is not None:
                # A full read: more is likely waiting, and libuv would read it at once into the scratch
                # buffer too (it reads on while reads come back full). If what was queued starts a large
                # argument, its owner can only offer the argument's bytes (`into`) once it has read it.
                reader.pause_until_read()


async def start_server(
    connected: Connected, host: str | None, port: int, limit: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """asyncio.start_server with ChunkReader readers that can be filled in place (decrypted into, with `tls`)."""
    return await asyncio.get_running_loop().create_server(
        lambda: _InPlaceProtocol(limit, connected), host, port, ssl=tls
    )


async def start_server_on(
    connected: Connected, sock: socket.socket, limit: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """start_server on a socket that listens already (another server's, duplicated: CONFIG SET tls-*)."""
    return await asyncio.get_running_loop().create_server(
        lambda: _InPlaceProtocol(limit, connected), sock=sock, ssl=tls
    )


async def start_unix_server(connected: Connected, path: str, limit: int) -> asyncio.Server:
    """asyncio.start_unix_server with ChunkReader readers that can be filled in place."""
    return await asyncio.get_running_loop().create_unix_server(lambda: _InPlaceProtocol(limit, connected), path)


async def open_connection(
    host: str, port: int, limit: int, tls: ssl.SSLContext | None = None
) -> tuple[ChunkReader, asyncio.StreamWriter]:
    """asyncio.open_connection with a ChunkReader (over TLS with `tls`, checking `host` against the certificate)."""
    loop = asyncio.get_running_loop()
    reader = ChunkReader(limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, host, port, ssl=tls)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def open_unix_connection(path: str, limit: int) -> tuple[ChunkReader, asyncio.StreamWriter]:
    """asyncio.open_unix_connection with a ChunkReader."""
    loop = asyncio.get_running_loop()
    reader = ChunkReader(limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_unix_connection(lambda: protocol, path)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

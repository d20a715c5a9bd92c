"""Socket writes that leave the GIL free while the kernel copies a large one.

uvloop's transport writes with the GIL held. A tensor's `SET` to the backing Redis (600 KB
for one 224x224 image) or a large reply takes the kernel a few hundred microseconds to copy,
and meanwhile no other thread runs Python: an engine thread woken for the run the same
pipeline asked for could not even start it (measured: 0.25 ms from a run's hand-over to its
start, median, for one client's TENSORSET + MODELEXECUTE + TENSORGET at batch 1; 0.07 ms with
the write made here). `os.writev` releases the GIL around the system call. Where the engine
already runs on every core the write then shares them, and a call gains little
(docs/benchmarks.md, "Engine time inside the runtime").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

__all__ = ["GIL_FREE_BYTES", "socket_fd", "write_chunks"]

GIL_FREE_BYTES = 64 * 1024  # smaller writes go through the transport: too short to be worth a second system call
_IOV_MAX = 1024  # Linux' limit on the buffers of one writev


def socket_fd(writer: asyncio.StreamWriter) -> int:
    """The file descriptor under `writer`'s transport, or -1 where bytes may not go to it directly.

    A TLS transport encrypts what it is given: its socket must never be written around it.
    """
    sock = writer.get_extra_info("socket")
    if sock is None or writer.get_extra_info("sslcontext") is not None:
        return -1
    return int(sock.fileno())


def write_chunks(writer: asyncio.StreamWriter, fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    """Write `chunks` in order, as `writer.writelines` would.

    A write of GIL_FREE_BYTES or more goes straight to the socket when the transport holds
    nothing back (so the bytes keep their order) and is not closing (a closed transport's
    descriptor may already belong to another socket); what the kernel does not take, and every
    error, is left to the transport, which sends the rest when the socket drains or closes the
    connection its usual way.
    """
    # The size first: most writes (replies, relayed commands) are small, and leave after one sum.
    if (sum(map(len, chunks)) < GIL_FREE_BYTES or fd < 0 or len(chunks) > _IOV_MAX or writer.is_closing()
            or writer.transport.get_write_buffer_size()):  # fmt: skip
        writer.writelines(chunks)
        return
    try:
        sent = os.writev(fd, chunks)
    except OSError:  # EAGAIN: the socket is full; anything else: the transport meets it too
        sent = 0
    for index, chunk in enumerate(chunks):
        if sent < len(chunk):
            writer.writelines([memoryview(chunk)[sent:], *chunks[index + 1 :]])
            return
        sent -= len(chunk)

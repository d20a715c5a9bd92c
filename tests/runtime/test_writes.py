"""Large socket writes made with the GIL released (gearcam.runtime.writes), on uvloop as the runtime runs them."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from gearcam.runtime.writes import GIL_FREE_BYTES, socket_fd, write_chunks

_SMALL_BUFFER = 64 * 1024  # a send buffer the payloads overflow, so the kernel takes only part of a write


def _read_all(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"the connection ended after {len(got)} of {size} bytes"
        got += chunk
    return bytes(got)


def _run(scenario: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario)


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SMALL_BUFFER)
    return ours, theirs


def test_what_the_kernel_does_not_take_follows_through_the_transport_in_order() -> None:
    first = [b"*3\r\n$3\r\nSET\r\n", bytes(range(256)) * 4096, b"\r\n"]  # 1 MiB between two small chunks
    second = [bytes(reversed(range(256))) * 2048]
    expected = b"".join(first + second)
    ours, theirs = _pair()
    early: list[bytes] = []
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(_read_all(theirs, len(expected) - len(b"".join(early)))))

    async def scenario() -> None:
        _, writer = await asyncio.open_connection(sock=ours)
        fd = socket_fd(writer)
        assert fd == ours.fileno()
        write_chunks(writer, fd, first)
        held = writer.transport.get_write_buffer_size()
        assert 0 < held < sum(map(len, first)), "the kernel took part of the write and the transport the rest"
        # Room in the socket again while the transport still holds the rest of `first` (the loop has
        # not turned): `second` must queue behind those bytes, not slip into the room ahead of them.
        theirs.setblocking(False)
        while True:
            try:
                early.append(theirs.recv(1 << 20))
            except BlockingIOError:
                break
        theirs.setblocking(True)
        write_chunks(writer, fd, second)
        reader.start()
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    _run(scenario())
    reader.join(30)
    theirs.close()
    assert early and b"".join(early + received) == expected


def test_small_writes_go_through_the_transport() -> None:
    ours, theirs = _pair()
    small = [b"+OK\r\n", b"x" * (GIL_FREE_BYTES - 6)]

    async def scenario() -> None:
        _, writer = await asyncio.open_connection(sock=ours)
        # An fd that is not the socket's: a direct write would fail (EBADF) and lose nothing, but the
        # bytes must still come out of the transport's socket, which they only do through the transport.
        write_chunks(writer, 10_000, small)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    _run(scenario())
    assert _read_all(theirs, sum(map(len, small))) == b"".join(small)
    theirs.close()


def test_a_large_write_lets_other_threads_run_python_while_the_kernel_copies_it() -> None:
    # write_chunks is handed a blocking socket whose only reader is a Python thread: the write can only
    # finish if that thread gets the GIL between its reads while the write is under way. Holding the
    # GIL through the write would hang the process, so it runs in a child with a deadline.
    script = textwrap.dedent(
        """
        import asyncio, socket, threading, uvloop
        from gearcam.runtime.writes import write_chunks

        payload = bytes(range(256)) * 32768  # 8 MiB, far beyond the socket's buffer
        idle, _ = socket.socketpair()  # under the transport, which stays empty
        blocking, peer = socket.socketpair()
        got = bytearray()

        def drain():
            while len(got) < len(payload):
                got.extend(peer.recv(65536))

        async def main():
            _, writer = await asyncio.open_connection(sock=idle)
            reader = threading.Thread(target=drain)
            reader.start()
            write_chunks(writer, blocking.fileno(), [payload])
            reader.join()
            assert bytes(got) == payload, len(got)
            print("whole", len(got))

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
        """
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the write held the GIL: the reading thread never ran (killed after 60 s)") from None
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["whole", str(256 * 32768)]


def test_a_tls_connection_is_never_written_around_its_encryption(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    found: list[int] = []

    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            found.append(socket_fd(writer))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_side, server_hostname="localhost")
        found.append(socket_fd(writer))
        await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    _run(scenario())
    assert found == [-1, -1]


def test_a_closing_transport_is_never_written_around() -> None:
    # Once closing, the transport's descriptor may be closed and reused by another socket at any
    # time: a large write must not go to it directly. Here the "descriptor" is another socket's,
    # which therefore must receive nothing.
    ours, theirs = _pair()
    other, other_peer = socket.socketpair()
    other_peer.setblocking(False)

    async def scenario() -> None:
        _, writer = await asyncio.open_connection(sock=ours)
        writer.close()
        write_chunks(writer, other.fileno(), [bytes(GIL_FREE_BYTES * 2)])
        await writer.wait_closed()

    _run(scenario())
    try:
        leaked = other_peer.recv(1 << 20)
    except BlockingIOError:
        leaked = b""
    for sock in (theirs, other, other_peer):
        sock.close()
    assert leaked == b""

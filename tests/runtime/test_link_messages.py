"""A backend link's replies and pub/sub messages (BackendLink.only_messages), however reads cut them, against a real
redis-server; and the chunk readers under links and clients."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from gearcam.errors import NetworkError
from gearcam.runtime import chunks
from gearcam.runtime.chunks import ChunkReader
from gearcam.runtime.gears.link import CommandError, SyncLink
from gearcam.runtime.relay import Address, BackendLink
from tests.conftest import free_port
from tests.runtime.conftest import Backing


def test_every_message_arrives_whole_and_in_order_however_the_reads_cut_them(backing: Backing) -> None:
    # Payloads from empty to several read sizes: messages straddle reads, reads hold many messages.
    payloads = [b"", b"x", b"\r\n*3\r\n$7\r\nmessage", bytes(range(256)) * 800, b"tail"] * 40
    received: list[Any] = []

    async def scenario() -> None:
        address = Address(host="127.0.0.1", port=backing.port)
        link = await BackendLink.open(address, 5.0, lambda frame: None)
        publisher = await BackendLink.open(address, 5.0, None)
        try:
            link.passthrough = True
            link.only_messages(received.append)
            link.send_passthrough([b"SUBSCRIBE", b"gearcam:test:messages"])
            await link.drain()
            while not received:  # the subscription's confirmation
                await asyncio.sleep(0.01)
            await publisher.pipeline([(b"PUBLISH", b"gearcam:test:messages", p) for p in payloads])
            for _ in range(500):
                if len(received) > len(payloads):
                    break
                await asyncio.sleep(0.01)
        finally:
            await link.close()
            await publisher.close()

    asyncio.run(scenario())
    assert received[0] == [b"subscribe", b"gearcam:test:messages", 1]
    assert received[1:] == [[b"message", b"gearcam:test:messages", p] for p in payloads]


def test_every_reply_arrives_whole_and_in_order_however_the_reads_cut_them(backing: Backing) -> None:
    # Values from empty to several read sizes: a reply alone in its read (handed on without a copy),
    # many in one read, one spread over many reads, and a read that ends inside the next reply.
    values = [b"", b"v", b"$5\r\nfake\r\n", bytes(range(256)) * 4096, b"tail", bytes(3 * 1024 * 1024)] * 6

    async def scenario() -> tuple[list[Any], list[Any]]:
        link = await BackendLink.open(Address(host="127.0.0.1", port=backing.port), 5.0, None)
        try:
            await link.pipeline([(b"SET", f"gearcam:test:reply:{i}".encode(), v) for i, v in enumerate(values)])
            gets = [(b"GET", f"gearcam:test:reply:{i}".encode()) for i in range(len(values))]
            together = await link.pipeline(gets, raw=True)
            alone = [(await link.pipeline([get], raw=True))[0] for get in gets]
            return together, alone
        finally:
            await link.close()

    together, alone = asyncio.run(scenario())
    expected = [b"$%d\r\n%s\r\n" % (len(v), v) for v in values]
    assert together == expected
    assert alone == expected


def test_a_consumer_gets_the_chunks_queued_before_it_was_set_first() -> None:
    async def scenario() -> list[bytes]:
        reader = ChunkReader(1024)
        got: list[bytes] = []
        reader.feed_data(b"one")
        reader.feed_data(b"two")

        async def loop() -> None:
            reader.consumer = got.append
            while chunk := await reader.read(1024):
                got.append(chunk)

        task = asyncio.get_running_loop().create_task(loop())
        reader.feed_data(b"three")  # before the task ran: queued behind the first two
        await asyncio.sleep(0)
        reader.feed_data(b"four")  # the queue is empty now: straight to the consumer
        reader.feed_eof()
        await task
        return got

    assert asyncio.run(scenario()) == [b"one", b"two", b"three", b"four"]


async def _serve_once(connected: chunks.Connected, client: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
    """An in-place server (chunks.start_server) on loopback; `client` writes to it; returns once `connected`
    has closed the connection."""
    done = asyncio.Event()

    async def serving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await connected(reader, writer)
        finally:
            writer.close()
            done.set()

    server = await chunks.start_server(serving, "127.0.0.1", 0, 1 << 20)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await client(writer)
        await writer.drain()
        writer.close()
        await asyncio.wait_for(done.wait(), 10)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_servers_reader_is_filled_in_place_while_its_owner_offers_a_buffer(loop_name: str) -> None:
    """Over a real socket: bytes go into the offered buffer (and are counted) until it is full, the rest are
    queued for read(); on both event loops, which call a buffered protocol differently."""
    target = bytearray(3_000_000)
    payload = bytes(range(256)) * 12_000  # 3,072,000 bytes: the buffer, then 72,000 more

    async def scenario() -> tuple[bytes, int, bytes]:
        filled: list[int] = []
        head = bytearray()
        rest = bytearray()
        offered = asyncio.Event()

        def offer() -> memoryview | None:
            got = sum(filled)
            return memoryview(target)[got:] if got < len(target) else None

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert isinstance(reader, ChunkReader)
            while len(head) < 4:  # before the offer: read as usual
                head.extend(await reader.read(1 << 20))
            reader.into, reader.filled = offer, filled.append
            offered.set()
            while chunk := await reader.read(1 << 20):
                rest.extend(chunk)

        async def client(writer: asyncio.StreamWriter) -> None:
            writer.write(b"head")
            await asyncio.wait_for(offered.wait(), 10)
            writer.write(payload)

        await _serve_once(connected, client)
        return bytes(head), sum(filled), bytes(rest)

    runner = uvloop.run if loop_name == "uvloop" else asyncio.run
    head, placed, rest = runner(scenario())
    assert head == b"head"
    assert placed == len(target) and bytes(target) == payload[: len(target)]
    assert rest == payload[len(target) :]


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_an_offer_made_after_the_first_read_gets_the_rest_of_a_write_sent_at_once(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's command and its large argument arrive together (one pipelined write): the owner can only
    offer the argument's buffer once it has read the first chunk, so the transport must not read on into
    the scratch buffer meanwhile (libuv reads up to 32 full buffers in one go): every byte after the first
    chunk goes in place, none is queued. A 4 KB scratch buffer makes the first read a full one whatever
    the kernel's socket buffers hold."""
    monkeypatch.setattr(chunks._scratch, "buffer", memoryview(bytearray(4096)), raising=False)
    payload = bytes(range(256)) * 12_000  # 3,072,000 bytes after a 4-byte head, in one write

    async def scenario() -> tuple[bytes, int, int]:
        target = bytearray()
        filled: list[int] = []
        first = bytearray()
        queued = 0

        def offer() -> memoryview | None:
            got = sum(filled)
            return memoryview(target)[got:] if got < len(target) else None

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal target, queued
            assert isinstance(reader, ChunkReader)
            reader.filled = filled.append  # an owner that can take bytes in place (as connection.py's)
            first.extend(await reader.read(1 << 20))  # the head and what came with it
            target = bytearray(4 + len(payload) - len(first))
            reader.into = offer
            while chunk := await reader.read(1 << 20):
                queued += len(chunk)

        async def client(writer: asyncio.StreamWriter) -> None:
            writer.write(b"head" + payload)

        await _serve_once(connected, client)
        assert bytes(first) + bytes(target) == b"head" + payload
        return bytes(first[:4]), sum(filled), queued

    runner = uvloop.run if loop_name == "uvloop" else asyncio.run
    head, placed, queued = runner(scenario())
    assert head == b"head"
    assert placed > 0 and queued == 0


def test_a_gears_link_that_cannot_log_in_closes_its_socket_at_once(backing: Backing) -> None:
    """A worker retrying a refused login must not leave a socket per try for the collector to find."""
    before = len(os.listdir("/proc/self/fd"))
    address = Address(host="127.0.0.1", port=backing.port, username="no-such-gears-user", password="any")
    gc.disable()
    try:
        for _ in range(20):
            with pytest.raises(CommandError, match="WRONGPASS"):
                SyncLink(address, 5.0)
        with pytest.raises(NetworkError, match="cannot reach the backing Redis"):
            SyncLink(Address(host="127.0.0.1", port=free_port()), 5.0)
        assert len(os.listdir("/proc/self/fd")) <= before + 1
    finally:
        gc.enable()

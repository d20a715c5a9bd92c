"""A backend link's replies and pub/sub messages (BackendLink.only_messages), however reads cut them, against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

from gearcam.runtime.chunks import ChunkReader
from gearcam.runtime.relay import Address, BackendLink
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

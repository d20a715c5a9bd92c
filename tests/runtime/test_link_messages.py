"""A subscription link that hands hiredis-parsed messages on (BackendLink.only_messages), against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

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

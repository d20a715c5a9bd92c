"""A bare TCP forwarder: the least that any process relaying to redis-server adds.

The relay section compares the runtime's relaying with direct calls to redis-server.
Part of what it costs is not the runtime's code but the second hop itself: one more
process woken, one more loopback send and receive of every frame each way. This
forwarder pays only that (bytes passed on as they arrive, on the same event loop the
runtime uses, nothing parsed), so its figure in the same run is the floor for the
runtime's, and shows how much of the gap is the runtime's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from gearcam.runtime.cli import loop_factory
from gearcam.runtime.relay import tune_link

__all__ = ["main"]


class _Side(asyncio.Protocol):
    """One end of a forwarded connection: what it receives is written to its peer."""

    def __init__(self) -> None:
        self.transport: Any = None  # (uvloop's transports are not asyncio.Transport subclasses)
        self.peer: _Side | None = None
        self._early: list[bytes] = []  # received before the peer connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self._early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pair(self, peer: _Side) -> None:
        self.peer = peer
        early, self._early = self._early, []
        if peer.transport is not None:
            for data in early:
                peer.transport.write(data)


class _Client(_Side):
    def __init__(self, to_port: int | None, to_unix: str | None) -> None:
        super().__init__()
        self._to_port = to_port
        self._to_unix = to_unix

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        try:
            loop = asyncio.get_running_loop()
            if self._to_unix is not None:
                transport, upstream = await loop.create_unix_connection(_Side, self._to_unix)
            else:
                transport, upstream = await loop.create_connection(_Side, "127.0.0.1", self._to_port or 0)
        except OSError:
            self.transport.close()
            return
        tune_link(transport.get_extra_info("socket"))  # the socket options the runtime's links get
        upstream.pair(self)
        self.pair(upstream)


async def _serve(port: int, to_port: int | None, to_unix: str | None) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: _Client(to_port, to_unix), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gearcam.bench.forwarder", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    to = parser.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-port", type=int, help="forward to 127.0.0.1:TO_PORT")
    to.add_argument("--to-unix", help="forward to the unix socket TO_UNIX (as the runtime reaches its embedded Redis)")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:  # the runtime's loop, uvloop when installed
        try:
            runner.run(_serve(args.port, args.to_port, args.to_unix))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

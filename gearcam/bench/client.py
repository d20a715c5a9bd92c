"""A lean pipelining RESP client and the AI.* calls the benchmark makes with it.

AIBench drives RedisAI from Go with implicit pipelining; redis-py spends ~15 ms of client
CPU sending a 10 MB tensor where a plain socket needs ~6 ms, so measured through it the
client would hide what the server costs. This client is a socket plus hiredis' parser;
it speaks plain RESP2, so it works against the gearcam runtime and a real RedisAI alike.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import hiredis

from gearcam.bench.measure import Call
from gearcam.runtime.resp import encode_command, read_replies

__all__ = ["LeanClient", "ai_call", "tensor_shape"]


class LeanClient:
    """One connection; ``pipeline`` sends commands in one write and reads all their replies."""

    def __init__(self, host: str, port: int, timeout: float = 120.0, tls: ssl.SSLContext | None = None) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self._sock = tls.wrap_socket(self._sock, server_hostname=host)
        self._tls = tls is not None
        self._reader = hiredis.Reader()

    def close(self) -> None:
        self._sock.close()

    def _send(self, chunks: list[bytes]) -> None:
        """Write every chunk without joining them: sendmsg may send only part, so go on from where it stopped.

        Over TLS joined: an SSL socket encrypts what one write gives it and has no sendmsg."""
        if self._tls:
            self._sock.sendall(b"".join(chunks))
            return
        views = [memoryview(c) for c in chunks]
        first = 0
        while first < len(views):
            sent = self._sock.sendmsg(views[first : first + 512])
            while sent:
                size = views[first].nbytes
                if sent >= size:
                    sent -= size
                    first += 1
                else:
                    views[first] = views[first][sent:]
                    sent = 0

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """The replies of ``commands``, in order; an error reply is raised (the connection stays usable)."""
        chunks: list[bytes] = []
        for command in commands:
            encode_command(command, chunks)
        self._send(chunks)
        replies = read_replies(self._sock, self._reader, len(commands))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


def tensor_shape(batch: int, item: tuple[int, ...]) -> list[int]:
    return [batch, *item]


def ai_call(client: LeanClient, key: str, payload: bytes, shape: list[int], slot: str, pipelined: bool) -> Call:
    """One inference as AIBench's vision client makes it: TENSORSET, MODELEXECUTE, TENSORGET.

    ``pipelined`` sends the three commands in one round trip; otherwise one command at a
    time, each waiting for its reply (what a naive client does). ``slot`` names the
    client's own tensor keys, so concurrent clients do not overwrite each other.
    """
    inp, out = f"bench:in:{slot}", f"bench:out:{slot}"
    tensorset = ("AI.TENSORSET", inp, "FLOAT", *shape, "BLOB", payload)
    execute = ("AI.MODELEXECUTE", key, "INPUTS", 1, inp, "OUTPUTS", 1, out)
    tensorget = ("AI.TENSORGET", out, "BLOB")

    def run() -> None:
        if pipelined:
            client.pipeline(tensorset, execute, tensorget)
        else:
            client.pipeline(tensorset)
            client.pipeline(execute)
            client.pipeline(tensorget)

    return run

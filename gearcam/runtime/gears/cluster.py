"""RedisGears 1.2's links between shards: the topology `RG.CLUSTERSET` gives, a connection to every other
shard, `RG.HELLO` and the numbered `RG.INNERMSGCOMMAND` messages with their resends, as its cluster.c keeps
them.

The runtime runs Gears executions on its own shard (docs/gears.md, "One shard"), so the only message it
sends is `RG.NETWORKTEST`'s and the only one it takes is that message; what the links promise is what
RedisGears' own network tests check: a message is numbered per shard, kept until the shard answers a
status, sent again after a reconnect to the same shard (same run id, at most `SendMsgRetries` times) and
dropped when the shard restarted (a new run id); a shard that answers `ERRCLUSTER` is sent the topology on
the next connection; a message seen twice from the same sender is answered `duplicate message ignored`.
Everything here runs on the runtime's main loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.resp import ProtocolError, SimpleString, encode_command, parse_reply, reply_end

__all__ = ["NETWORK_TEST", "NO_CLUSTER_MODE", "ShardLinks", "Topology", "parse_topology"]

logger = logging.getLogger(__name__)

ID_LEN = 40  # a node id, as Redis Cluster's; RedisGears pads shorter ones with zeros on the left
MY_ID_INDEX = 6  # where RG.CLUSTERSET's arguments (its name at 0) name the shard that reads them
SLOTS = 16384
RETRY_S = 1.0  # RedisGears reconnects, and asks RG.HELLO again, after a second
NETWORK_TEST = "RG_NetworkTest"  # the one message function the runtime takes (RG.NETWORKTEST's)
NO_CLUSTER_MODE = b"no cluster mode"
_SET_FROM_SHARD = b"RG.CLUSTERSETFROMSHARD"
_INNER_MESSAGE = b"RG.INNERMSGCOMMAND"
_CLUSTER_ERROR = b"-ERRCLUSTER"
_UNPARSED = "Could not parse cluster set arguments"
_INTEGER = re.compile(rb"-?[0-9]+")
# Bounds RedisGears does not have, so that a client cannot grow the runtime without end: messages kept for a
# shard that does not answer (the oldest goes first, logged), and senders remembered (the oldest forgotten).
MAX_PENDING = 10_000
MAX_SENDERS = 4_096


class Status(enum.Enum):
    DISCONNECTED = "disconnected"
    HELLO_SENT = "hello sent"
    CONNECTED = "connected"


@dataclass(eq=False)
class _Sent:
    """A message kept until its shard answers a status: RedisGears resends it after a reconnect."""

    args: tuple[bytes, ...]
    retries: int = 0


@dataclass(eq=False)
class _Connection:
    """One TCP connection to a shard; replies come back in the order of `answers`."""

    writer: asyncio.StreamWriter
    answers: deque[Callable[[bytes], str | None] | None] = field(default_factory=deque)  # say why to drop it

    def send(self, args: Sequence[bytes], answer: Callable[[bytes], str | None] | None = None) -> None:
        self.writer.write(b"".join(encode_command(args)))
        self.answers.append(answer)


@dataclass(eq=False)
class Node:
    id: str
    ip: str
    port: int
    password: bytes
    min_slot: int
    max_slot: int
    is_me: bool
    run_id: str | None = None  # what the shard's RG.HELLO answered last
    msg_id: int = 0
    pending: deque[_Sent] = field(default_factory=deque)
    status: Status = Status.DISCONNECTED
    send_topology: bool = False
    connection: _Connection | None = None
    task: asyncio.Task[None] | None = None
    hello_again: asyncio.TimerHandle | None = None


@dataclass
class Topology:
    my_id: str
    ranges: int
    nodes: dict[str, Node]
    set_command: list[bytes] | None  # RG.CLUSTERSETFROMSHARD's arguments for a shard told again, MY_ID_INDEX its id
    run_id: str = field(default_factory=lambda: secrets.token_hex(ID_LEN // 2))

    @property
    def cluster_mode(self) -> bool:
        """RedisGears' test: more than one slot range, and more than one shard."""
        return self.ranges > 1 and len(self.nodes) > 1


def _padded(raw: bytes, what: str) -> str:
    text = raw.decode("utf-8", "replace")
    if not text or len(text) > ID_LEN:
        raise GearsError(f"{_UNPARSED}: {what} {text!r} is not 1 to {ID_LEN} characters")
    return text.rjust(ID_LEN, "0")


def _integer(raw: bytes, what: str, low: int, high: int) -> int:
    if _INTEGER.fullmatch(raw) is None or not low <= int(raw) <= high:
        text = raw.decode("utf-8", "replace")
        raise GearsError(f"{_UNPARSED}: {what} {text!r} is not an integer from {low} to {high}")
    return int(raw)


def _address(raw: bytes) -> tuple[bytes, str, int]:
    """`password@host:port`, the host maybe in brackets (IPv6), the port after the last colon."""
    password, at, rest = raw.partition(b"@")
    host, colon, port = rest.rpartition(b":")
    if not at or not colon or not host:
        raise GearsError(f"{_UNPARSED}: address {raw.decode('utf-8', 'replace')!r} is not password@host:port")
    if host.startswith(b"[") and host.endswith(b"]"):
        host = host[1:-1]
    return password, host.decode("utf-8", "replace"), _integer(port, "port", 0, 65535)


def parse_topology(args: Sequence[bytes]) -> Topology:
    """RG.CLUSTERSET's arguments, as Redis Enterprise sends them; checked whole before anything changes.

    RedisGears reads: 5 unused, the reader's shard id, 1 unused, the number of slot ranges, then per range
    1 unused, the shard id, 1 unused, the first and last slot, 1 unused, `password@host:port`, and between
    ranges 1 unused or `UNIXADDR <path>` (RedisGears ignores the path too).
    """
    if len(args) < 10:
        raise GearsError(_UNPARSED)
    my_id = _padded(args[MY_ID_INDEX], "shard id")
    ranges = _integer(args[8], "number of slot ranges", 0, SLOTS)
    nodes: dict[str, Node] = {}
    i = 9
    for j in range(ranges):
        if i + 6 >= len(args):
            raise GearsError(f"{_UNPARSED}: slot range {j + 1} of {ranges} is missing or incomplete")
        node_id = _padded(args[i + 1], "shard id")
        low = _integer(args[i + 3], "first slot", 0, SLOTS - 1)
        high = _integer(args[i + 4], "last slot", low, SLOTS - 1)
        password, ip, port = _address(args[i + 6])
        if node_id not in nodes:
            nodes[node_id] = Node(node_id, ip, port, password, low, high, node_id == my_id)
        if j < ranges - 1 and i + 7 < len(args) and args[i + 7] == b"UNIXADDR":
            i += 2
        i += 8
    command = [_SET_FROM_SHARD, *args[1:]]
    return Topology(my_id, ranges, nodes, command)


class ShardLinks:
    """The service's view of the other shards: the topology in force and the messages it has taken."""

    def __init__(self, retries: Callable[[], int]) -> None:
        self.topology: Topology | None = None
        self._retries = retries  # RG.CONFIGSET's SendMsgRetries, read when a message is resent
        self._taken: dict[tuple[bytes, bytes], int] = {}  # (sender id, sender run id) -> last message id taken

    # ---- commands

    def set(self, args: Sequence[bytes], force: bool) -> None:
        """RG.CLUSTERSET (`force`) replaces the topology; RG.CLUSTERSETFROMSHARD only sets a first one."""
        if not force and self.topology is not None:
            return
        topology = parse_topology(args)
        was_cluster = self.topology is not None and self.topology.cluster_mode
        self._drop()
        self.topology = topology
        self._taken.clear()
        others = [n for n in topology.nodes.values() if not n.is_me]
        if topology.cluster_mode and not was_cluster:
            logger.warning(
                "a topology of %d shards was set (%s): Gears executions and registrations stay on this shard, "
                "the gearcam runtime does not distribute them (docs/gears.md, 'One shard')",
                len(topology.nodes), "RG.CLUSTERSET" if force else "RG.CLUSTERSETFROMSHARD",
            )  # fmt: skip
        for node in others:
            node.task = asyncio.get_running_loop().create_task(self._keep_linked(node), name=f"gears-shard-{node.id}")

    def refresh(self) -> None:
        """RG.REFRESHCLUSTER outside Redis Cluster: no shards, a new run id (RedisGears' Cluster_Refresh)."""
        self._drop()
        self.topology = Topology("0" * ID_LEN, 0, {}, None)
        self._taken.clear()

    def hello(self) -> bytes:
        if self.topology is None:
            logger.warning("RG.HELLO from another shard before any topology was set")
            raise GearsError("ERRCLUSTER NULL cluster state on hello msg")
        return self.topology.run_id.encode()

    def info(self) -> Any:
        t = self.topology
        if t is None or not t.cluster_mode:
            return NO_CLUSTER_MODE
        shards = []
        for n in t.nodes.values():
            run_id = n.run_id if n.run_id is not None else (t.run_id if n.is_me else None)
            shards.append([
                b"id", n.id, b"ip", n.ip, b"port", n.port, b"unixSocket", b"None", b"runid", run_id,
                b"minHslot", n.min_slot, b"maxHslot", n.max_slot, b"pendingMessages", len(n.pending),
            ])  # fmt: skip
        return [b"MyId", t.my_id, b"MyRunId", t.run_id, shards]

    def send(self, function: str, payload: bytes) -> None:
        """A message to every other shard, numbered per shard; sent now where the shard said hello, else kept."""
        t = self.topology
        if t is None:
            return
        for node in t.nodes.values():
            if node.is_me:
                continue
            sent = _Sent((_INNER_MESSAGE, t.my_id.encode(), t.run_id.encode(), function.encode(), payload,
                          str(node.msg_id).encode()))  # fmt: skip
            node.msg_id += 1
            if len(node.pending) >= MAX_PENDING:
                node.pending.popleft()
                logger.warning("shard %s (%s:%d) has %d messages unanswered: the oldest is dropped", node.id,
                               node.ip, node.port, MAX_PENDING)  # fmt: skip
            if node.status is Status.CONNECTED and node.connection is not None:
                node.connection.send(sent.args, partial(self._message_answered, node))
            else:
                logger.info("message to shard %s (%s:%d) kept until it says hello again", node.id, node.ip, node.port)
            node.pending.append(sent)

    def receive(self, sender: bytes, run_id: bytes, function: bytes, payload: bytes, msg_id: bytes) -> SimpleString:
        """RG.INNERMSGCOMMAND from another shard: taken once per (sender, run id, number)."""
        if self.topology is None:
            logger.warning("a message from shard %r before any topology was set", sender)
            raise GearsError("ERRCLUSTER NULL cluster state")
        if _INTEGER.fullmatch(msg_id) is None:
            logger.warning("a message from shard %r with a bad id %r", sender, msg_id)
            raise GearsError("bad msg id given")
        number = int(msg_id)
        last = self._taken.get((sender, run_id), -1)
        if number <= last:
            logger.warning("duplicate message ignored, msgId: %d, currId: %d", number, last)
            return SimpleString("duplicate message ignored")
        if (sender, run_id) not in self._taken and len(self._taken) >= MAX_SENDERS:
            del self._taken[next(iter(self._taken))]
        self._taken[(sender, run_id)] = number
        if function.decode("utf-8", "replace") != NETWORK_TEST:
            logger.warning(
                "a message for %r from shard %r: the gearcam runtime runs Gears executions on this shard only and "
                "takes no execution messages", function, sender,
            )  # fmt: skip
            raise GearsError("can not find the callback requested")
        logger.info("Got test network message from shard %s", sender.decode("utf-8", "replace"))
        return SimpleString("OK")

    async def close(self) -> None:
        tasks = self._drop()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the links

    def _drop(self) -> list[asyncio.Task[None]]:
        """Forget the topology: its connections close, its kept messages go (RedisGears frees them)."""
        tasks = []
        if self.topology is not None:
            for node in self.topology.nodes.values():
                if node.hello_again is not None:
                    node.hello_again.cancel()
                if node.task is not None:
                    node.task.cancel()
                    tasks.append(node.task)
            self.topology = None
        return tasks

    async def _keep_linked(self, node: Node) -> None:
        """Connect, say hello, read replies; reconnect a second after the connection failed or ended."""
        told = False
        while True:
            try:
                reader, writer = await asyncio.open_connection(node.ip, node.port)
            except OSError as exc:
                if not told:
                    logger.warning("cannot connect to shard %s (%s:%d): %s; trying every second", node.id,
                                   node.ip, node.port, exc)  # fmt: skip
                    told = True
                await asyncio.sleep(RETRY_S)
                continue
            told = False
            connection = _Connection(writer)
            node.connection = connection
            try:
                self._connected(node, connection)
                reason = await self._read(node, connection, reader)
            except Exception as exc:  # a fault here must not end the link: RedisGears reconnects whatever happened
                logger.exception("the link to shard %s (%s:%d) failed", node.id, node.ip, node.port)
                reason = f"failed: {exc!r}"
            finally:
                node.connection = None
                node.status = Status.DISCONNECTED
                if node.hello_again is not None:
                    node.hello_again.cancel()
                    node.hello_again = None
                writer.close()
            logger.warning("disconnected from shard %s (%s:%d): %s; reconnecting in 1 second to send what it has "
                           "not answered", node.id, node.ip, node.port, reason)  # fmt: skip
            await asyncio.sleep(RETRY_S)

    def _connected(self, node: Node, connection: _Connection) -> None:
        logger.info("connected to shard %s (%s:%d)", node.id, node.ip, node.port)
        if node.password:
            connection.send((b"AUTH", node.password))
        self._tell_topology(node, connection)
        connection.send((b"RG.HELLO",), partial(self._hello_answered, node, connection))
        node.status = Status.HELLO_SENT

    def _tell_topology(self, node: Node, connection: _Connection) -> None:
        command = self.topology.set_command if self.topology is not None else None
        if node.send_topology and command is not None:
            logger.info("sending the cluster topology to shard %s (%s:%d)", node.id, node.ip, node.port)
            connection.send([*command[:MY_ID_INDEX], node.id.encode(), *command[MY_ID_INDEX + 1 :]])
            node.send_topology = False

    async def _read(self, node: Node, connection: _Connection, reader: asyncio.StreamReader) -> str:
        """Hand each reply to what waits for it; returns why the connection ends."""
        buffer = bytearray()
        while True:
            try:
                data = await reader.read(65536)
            except OSError as exc:  # reset by the shard, or the network
                return f"connection error: {exc}"
            if not data:
                return "closed by the shard"
            buffer += data
            start = 0
            try:
                while (end := reply_end(buffer, start)) >= 0:
                    frame = bytes(buffer[start:end])
                    start = end
                    answer = connection.answers.popleft() if connection.answers else None
                    reason = answer(frame) if answer is not None else None
                    if reason is not None:
                        return reason
            except (ProtocolError, ValueError) as exc:
                return f"not the Redis protocol: {exc}"
            del buffer[:start]

    def _hello_answered(self, node: Node, connection: _Connection, frame: bytes) -> None:
        if frame[:1] != b"$" or frame.startswith(b"$-1"):
            if frame.startswith(_CLUSTER_ERROR):
                logger.warning("shard %s (%s:%d) has no topology; it is sent again with the next hello in 1 second",
                               node.id, node.ip, node.port)  # fmt: skip
                node.send_topology = True
            else:
                logger.warning("bad hello reply from shard %s (%s:%d): %r; asking again in 1 second", node.id,
                               node.ip, node.port, frame[:80])  # fmt: skip
            node.hello_again = asyncio.get_running_loop().call_later(RETRY_S, self._hello_again, node, connection)
            return None
        run_id = bytes(parse_reply(frame)).decode("utf-8", "replace")
        if node.run_id is not None and node.run_id != run_id:
            # The shard restarted: what it had not answered is lost with it, and numbering starts again.
            node.msg_id = 0
            node.pending.clear()
        else:
            limit = self._retries()
            for sent in list(node.pending):
                sent.retries += 1
                if limit == 0 or sent.retries < limit:
                    connection.send(sent.args, partial(self._message_answered, node))
                else:
                    logger.warning("gave up a message to shard %s after sending it %d times (SendMsgRetries)",
                                   node.id, limit)  # fmt: skip
                    node.pending.remove(sent)
        node.run_id = run_id
        node.status = Status.CONNECTED
        return None

    def _hello_again(self, node: Node, connection: _Connection) -> None:
        node.hello_again = None
        if node.connection is not connection or node.status is Status.DISCONNECTED:
            return  # asked again when it reconnects
        self._tell_topology(node, connection)
        connection.send((b"RG.HELLO",), partial(self._hello_answered, node, connection))

    def _message_answered(self, node: Node, frame: bytes) -> str | None:
        """A status takes the oldest kept message off; anything else drops the connection to send it again."""
        if frame.startswith(_CLUSTER_ERROR):
            node.send_topology = True
            return "it answered ERRCLUSTER: it gets the topology on the next connection"
        if frame[:1] != b"+":
            text = frame[:80].decode("utf-8", "replace").strip()
            return f"it answered a message with {text!r}, not a status (a low proto-max-bulk-len there does this)"
        if node.pending:
            node.pending.popleft()
        return None

"""RedisGears' links between shards: RG.CLUSTERSET, RG.HELLO, RG.INNERMSGCOMMAND and their resends.

The other shard is a real socket the test answers by hand, as RedisGears' own test_network.py does, so
every frame the runtime sends is checked as it arrives.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import struct
import threading
from collections.abc import Iterator

import hiredis
import pytest
import redis

from gearcam.runtime.gears import cluster
from gearcam.runtime.gears.cluster import ShardLinks
from tests.runtime.conftest import Backing, RawError, Runtime, raw_call
from tests.runtime.gears_helpers import pairs

ME, OTHER = "0" * 39 + "1", "0" * 39 + "2"


class Shard:
    """A listening socket standing for another RedisGears shard; each connection the runtime opens is queued."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: queue.Queue[Peer] = queue.Queue()
        self.peers: list[Peer] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            peer = Peer(sock)
            self.peers.append(peer)
            self.connections.put(peer)

    def topology(self) -> list[str]:
        return topology_with(self.port)

    def accept(self, timeout: float = 5) -> Peer:
        return self.connections.get(timeout=timeout)

    def greeted(self, run_id: str = "run-1") -> Peer:
        """The next connection, after its AUTH and RG.HELLO (pipelined, as RedisGears sends them) are answered."""
        peer = self.accept()
        assert peer.request() == [b"AUTH", b"secret"]
        assert peer.request() == [b"RG.HELLO"]
        peer.reply(b"+OK\r\n")
        peer.reply(b"$%d\r\n%s\r\n" % (len(run_id), run_id.encode()))
        return peer

    def close(self) -> None:
        self.server.close()
        for peer in self.peers:
            peer.close()


def topology_with(port: int, password: str = "secret") -> list[str]:
    """RG.CLUSTERSET as Redis Enterprise sends it: this runtime is shard 1 (slots 0-8192), shard 2 listens at `port`."""
    return [
        "RG.CLUSTERSET", *["NO-USED"] * 5, "1", "NO-USED", "2",
        "NO-USED", "1", "NO-USED", "0", "8192", "NO-USED", "password@127.0.0.1:6379", "NO-USED",
        "NO-USED", "2", "NO-USED", "8193", "16383", "NO-USED", f"{password}@127.0.0.1:{port}",
    ]  # fmt: skip


class Peer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader()

    def request(self, timeout: float = 5) -> list[bytes] | None:
        """The next command the runtime sent, or None once it closed the connection."""
        self.sock.settimeout(timeout)
        while (value := self.reader.gets()) is False:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.reader.feed(data)
        return value  # type: ignore[no-any-return]

    def silent(self, seconds: float) -> bool:
        """Nothing arrives (or the connection ends) for `seconds`."""
        try:
            return self.request(timeout=seconds) is None
        except TimeoutError:
            return True

    def reply(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def close(self) -> None:
        self.sock.close()


def message(run_id: bytes, number: int) -> list[bytes]:
    return [b"RG.INNERMSGCOMMAND", ME.encode(), run_id, b"RG_NetworkTest", b"test", str(number).encode()]


@pytest.fixture
def shard(r: redis.Redis) -> Iterator[Shard]:
    stub = Shard()
    yield stub
    stub.close()
    # Leave a topology of this shard alone: no links, `no cluster mode`, the default retries.
    topology = stub.topology()
    r.execute_command(*topology[:8], "1", *topology[9:17])
    r.execute_command("RG.CONFIGSET", "SendMsgRetries", "3")


def shards_of(r: redis.Redis) -> dict[str, dict[str, object]]:
    info = r.execute_command("RG.INFOCLUSTER")
    return {pairs(s)["id"].decode(): pairs(s) for s in info[4]}


def test_a_shard_is_greeted_and_gets_numbered_messages_sent_again_after_a_reconnect(
    r: redis.Redis, shard: Shard
) -> None:
    assert r.execute_command(*shard.topology()) == b"OK"
    info = r.execute_command("RG.INFOCLUSTER")
    assert info[:3] == [b"MyId", ME.encode(), b"MyRunId"] and len(info[3]) == 40
    assert r.execute_command("RG.HELLO") == info[3]  # what another shard learns of this one
    run_id = info[3]
    peer = shard.greeted("run-1")
    assert r.execute_command("RG.NETWORKTEST") == b"OK"
    assert peer.request() == message(run_id, 0)
    peer.reply(b"+OK\r\n")
    assert r.execute_command("RG.NETWORKTEST") == b"OK"
    assert peer.request() == message(run_id, 1)
    other = shards_of(r)[OTHER]
    assert other["runid"] == b"run-1" and other["port"] == shard.port and other["pendingMessages"] == 1
    assert (other["minHslot"], other["maxHslot"], other["unixSocket"]) == (8193, 16383, b"None")
    assert shards_of(r)[ME]["runid"] == run_id
    peer.close()  # before answering message 1
    peer = shard.greeted("run-1")  # the same run: message 1 again, not message 0
    assert peer.request() == message(run_id, 1)
    peer.reply(b"+duplicate message ignored\r\n")  # any status takes it off
    assert peer.silent(0.5)
    assert shards_of(r)[OTHER]["pendingMessages"] == 0


def test_a_restarted_shard_loses_what_it_had_not_answered_and_numbering_starts_again(
    r: redis.Redis, shard: Shard
) -> None:
    r.execute_command(*shard.topology())
    run_id = r.execute_command("RG.HELLO")
    peer = shard.greeted("run-1")
    r.execute_command("RG.NETWORKTEST")
    assert peer.request() == message(run_id, 0)
    peer.close()
    peer = shard.greeted("run-2")  # another run id: the shard restarted
    assert peer.silent(1.2)
    assert shards_of(r)[OTHER]["pendingMessages"] == 0
    r.execute_command("RG.NETWORKTEST")
    assert peer.request() == message(run_id, 0)


def test_a_message_kept_while_the_shard_has_not_said_hello_goes_once_it_does(r: redis.Redis, shard: Shard) -> None:
    r.execute_command(*shard.topology())
    run_id = r.execute_command("RG.HELLO")
    peer = shard.accept()
    assert peer.request() == [b"AUTH", b"secret"] and peer.request() == [b"RG.HELLO"]
    r.execute_command("RG.NETWORKTEST")  # before the hello is answered
    assert shards_of(r)[OTHER]["pendingMessages"] == 1
    peer.reply(b"+OK\r\n$5\r\nrun-1\r\n")
    assert peer.request() == message(run_id, 0)


def test_an_error_reply_reconnects_and_the_message_is_given_up_after_send_msg_retries(
    r: redis.Redis, shard: Shard
) -> None:
    assert (
        str(raw_call(r, "RG.CONFIGSET", "SendMsgRetries", "-1")[0])
        == "(error) Failed setting config value SendMsgRetries"
    )  # type: ignore[index]
    assert r.execute_command("RG.CONFIGSET", "SendMsgRetries", "2") == [b"OK"]
    r.execute_command(*shard.topology())
    run_id = r.execute_command("RG.HELLO")
    peer = shard.greeted()
    r.execute_command("RG.NETWORKTEST")
    for _ in range(2):  # sent, then sent again once: two sends in all
        assert peer.request() == message(run_id, 0)
        peer.reply(b"-Err\r\n")
        assert peer.request() is None  # the runtime closed the connection
        peer = shard.greeted()
    assert peer.silent(1.2)
    assert shards_of(r)[OTHER]["pendingMessages"] == 0


def test_a_shard_without_topology_is_sent_it_on_the_next_connection(r: redis.Redis, shard: Shard) -> None:
    topology = shard.topology()
    r.execute_command(*topology)
    run_id = r.execute_command("RG.HELLO")
    peer = shard.greeted()
    r.execute_command("RG.NETWORKTEST")
    assert peer.request() == message(run_id, 0)
    peer.reply(b"-ERRCLUSTER Uninitialized cluster state\r\n")
    assert peer.request() is None
    peer = shard.accept()
    assert peer.request() == [b"AUTH", b"secret"]
    told = [b"RG.CLUSTERSETFROMSHARD", *(a.encode() for a in topology[1:])]
    told[6] = OTHER.encode()  # the shard it is sent to reads itself as "my id"
    assert peer.request() == told
    assert peer.request() == [b"RG.HELLO"]
    peer.reply(b"+OK\r\n-ERR unknown command\r\n$5\r\nrun-1\r\n")
    assert peer.request() == message(run_id, 0)


def test_a_bad_hello_reply_is_asked_again_a_second_later(r: redis.Redis, shard: Shard) -> None:
    r.execute_command(*shard.topology())
    peer = shard.accept()
    assert peer.request() == [b"AUTH", b"secret"] and peer.request() == [b"RG.HELLO"]
    peer.reply(b"+OK\r\n-ERR not yet\r\n")
    assert peer.request(timeout=3) == [b"RG.HELLO"]  # on the same connection
    peer.reply(b"-ERRCLUSTER NULL cluster state on hello msg\r\n")
    told = peer.request(timeout=3)  # the topology first, since the shard has none
    assert told is not None and told[0] == b"RG.CLUSTERSETFROMSHARD" and told[6] == OTHER.encode()
    assert peer.request() == [b"RG.HELLO"]


def test_a_new_topology_replaces_the_links_and_one_from_a_shard_only_sets_a_first(r: redis.Redis, shard: Shard) -> None:
    topology = shard.topology()
    r.execute_command(*topology)
    first = r.execute_command("RG.HELLO")
    peer = shard.greeted()
    r.execute_command(*topology)  # the same again: a new run, a new connection
    assert peer.request() is None
    peer = shard.greeted()
    assert r.execute_command("RG.HELLO") != first
    mine = r.execute_command("RG.HELLO")
    from_shard = ["RG.CLUSTERSETFROMSHARD", *topology[1:]]
    from_shard[6] = "7"
    assert r.execute_command(*from_shard) == b"OK"  # a topology is set: ignored
    assert r.execute_command("RG.HELLO") == mine and r.execute_command("RG.INFOCLUSTER")[1] == ME.encode()
    assert r.execute_command("RG.REFRESHCLUSTER") == b"OK"  # outside Redis Cluster: no shards any more
    assert peer.request() is None
    assert r.execute_command("RG.INFOCLUSTER") == b"no cluster mode"


def test_bad_topologies_are_refused_and_change_nothing(r: redis.Redis, shard: Shard) -> None:
    topology = shard.topology()
    r.execute_command(*topology)
    before = r.execute_command("RG.INFOCLUSTER")
    assert str(raw_call(r, "RG.CLUSTERSET", *["NO-USED"] * 8)) == "Could not parse cluster set arguments"
    bad_slot = list(topology)
    bad_slot[12] = "x"
    assert "first slot 'x' is not an integer from 0 to 16383" in str(raw_call(r, *bad_slot))
    bad_address = list(topology)
    bad_address[15] = "127.0.0.1:6379"
    assert "is not password@host:port" in str(raw_call(r, *bad_address))
    assert "slot range 2 of 2 is missing" in str(raw_call(r, *topology[:20]))
    long_id = list(topology)
    long_id[6] = "1" * 41
    assert "is not 1 to 40 characters" in str(raw_call(r, *long_id))
    assert r.execute_command("RG.INFOCLUSTER") == before


def test_messages_from_another_shard_are_taken_once_per_sender_and_run(r: redis.Redis, shard: Shard) -> None:
    r.execute_command(*shard.topology())
    shard.greeted()

    def inner(*args: object) -> object:
        return raw_call(r, "RG.INNERMSGCOMMAND", *args)

    assert inner(OTHER, "run-a", "RG_NetworkTest", "test", "0") == b"OK"
    assert inner(OTHER, "run-a", "RG_NetworkTest", "test", "0") == b"duplicate message ignored"
    assert inner(OTHER, "run-a", "RG_NetworkTest", "test", "1") == b"OK"
    assert inner(OTHER, "run-b", "RG_NetworkTest", "test", "0") == b"OK"  # the shard restarted
    unknown = inner(OTHER, "run-a", "ExecutionPlan_OnReceived", "plan", "2")
    assert isinstance(unknown, RawError) and str(unknown) == "can not find the callback requested"
    assert str(inner(OTHER, "run-a", "RG_NetworkTest", "test", "x")) == "bad msg id given"
    assert "wrong number of arguments" in str(inner(OTHER, "run-a"))


def test_before_any_topology_hello_and_messages_answer_errcluster(stack: tuple[Backing, Runtime]) -> None:
    client = redis.Redis(port=stack[1].port)
    hello = raw_call(client, "RG.HELLO")
    assert isinstance(hello, RawError) and str(hello) == "ERRCLUSTER NULL cluster state on hello msg"
    inner = raw_call(client, "RG.INNERMSGCOMMAND", OTHER, "run-a", "RG_NetworkTest", "test", "0")
    assert str(inner) == "ERRCLUSTER NULL cluster state"
    assert client.execute_command("RG.INFOCLUSTER") == b"no cluster mode"
    assert client.execute_command("RG.NETWORKTEST") == b"OK"  # no shard to send to


def test_what_a_client_can_make_the_links_keep_is_bounded() -> None:
    """Messages for a shard that never answers, and the senders remembered, stop growing at their bounds."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the shard is never reached
    topology = topology_with(port)

    async def scenario() -> tuple[int, bytes, object, object]:
        links = ShardLinks(lambda: 3)
        links.set([a.encode() for a in topology], force=True)
        for _ in range(cluster.MAX_PENDING + 5):
            links.send(cluster.NETWORK_TEST, b"test")
        node = links.topology.nodes[OTHER]  # type: ignore[union-attr]
        pending, newest = len(node.pending), node.pending[-1].args[5]
        first = links.receive(b"s-0", b"r", b"RG_NetworkTest", b"test", b"0")
        for n in range(1, cluster.MAX_SENDERS + 1):
            links.receive(f"s-{n}".encode(), b"r", b"RG_NetworkTest", b"test", b"0")
        again = links.receive(b"s-0", b"r", b"RG_NetworkTest", b"test", b"0")  # forgotten: taken again
        await links.close()
        return pending, newest, first, again

    pending, newest, first, again = asyncio.run(scenario())
    assert pending == cluster.MAX_PENDING and newest == str(cluster.MAX_PENDING + 4).encode()
    assert first == again == "OK"


def test_a_connection_reset_by_the_shard_is_reconnected(r: redis.Redis, shard: Shard) -> None:
    r.execute_command(*shard.topology())
    run_id = r.execute_command("RG.HELLO")
    peer = shard.greeted()
    r.execute_command("RG.NETWORKTEST")
    assert peer.request() == message(run_id, 0)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # a reset, not a FIN: the runtime's read fails rather than ends
    peer = shard.greeted()
    assert peer.request() == message(run_id, 0)
    peer.reply(b"+OK\r\n")
    assert r.execute_command("RG.NETWORKTEST") == b"OK"
    assert peer.request() == message(run_id, 1)

"""Fuzzing the front door (issue 14): the request parser and every AI.* and RG.* argument parser.

The property, for any input: an error reply or a correct reply; the connection and the runtime stay
usable (a pipelined command before and after the fuzzed one gets its reply, in order); another client
keeps a sub-second PING the whole time. The parser is also fuzzed on its own (fast, no sockets), and
inline commands are compared with redis-server's own splitting.

Runs in well under a minute with the default profile ("ci": fixed examples, no database, so CI is
repeatable). `GEARCAM_FUZZ_PROFILE=deep pytest tests/runtime/test_fuzz.py` runs many more, at random.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearcam.runtime.request import (
    PROTO_MAX_BULK_LEN,
    RequestParser,
    complete_commands,
    continue_command,
    split_inline,
    unfinished_command,
)
from gearcam.runtime.resp import ProtocolError, encode_command
from tests.runtime.conftest import Backing, RawError, Runtime, free_port
from tests.runtime.models import add_model

settings.register_profile(
    "ci", max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
settings.register_profile(
    "deep", max_examples=3000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile(os.environ.get("GEARCAM_FUZZ_PROFILE", "ci"))

_PING_LIMIT = 1.0  # seconds, the "sub-second PING" of another client


# The parser on its own ------------------------------------------------------------------------------

_args = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@given(st.lists(_args, min_size=1, max_size=8), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_any_pipeline_split_anywhere_parses_back_to_its_commands(commands: list[list[bytes]], cuts: list[int]) -> None:
    stream = b"".join(b"".join(encode_command(list(c))) for c in commands)
    parser = RequestParser(1 << 20)
    parsed: list[list[bytes]] = []
    position = 0
    for cut in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        parsed += parser.commands(stream[position : position + cut])
        position += cut
        if position >= len(stream):
            break
    assert parsed == commands
    assert parser.buffered == 0


_TOKENS = [b"*", b"$", b"\r\n", b"\r", b"\n", b"0", b"1", b"-1", b"3", b"10", b"11", b"16385", b"2147483647",
           b"2147483648", b"536870913", b"99999999999999999999999", b"PING", b'"', b"'", b"\\", b"x", b" ", b"\x00",
           b"+", b"abc"]  # fmt: skip


@given(st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=8)), max_size=30), st.booleans())
def test_any_bytes_give_commands_or_a_protocol_error_and_hold_no_more_than_sent(
    pieces: list[bytes], authenticated: bool
) -> None:
    data = b"".join(pieces)
    parser = RequestParser(1 << 20)
    parser.authenticated = authenticated
    try:
        for command in parser.commands(data):
            assert command and all(isinstance(arg, bytes) for arg in command)
    except ProtocolError as exc:
        assert str(exc)
    assert parser.buffered <= len(data) + 48 * len(data)


def _parsed(data: bytes) -> tuple[list[list[bytes]], str | None]:
    """The commands a connection gets from `data`, one by one, and the error that ends them."""
    parser = RequestParser(1 << 20)
    out: list[list[bytes]] = []
    try:
        parser.feed(data)
        while (command := parser.gets()) is not None:
            out.append(command)
    except ProtocolError as exc:
        return out, str(exc)
    return out, None


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_TOKENS), st.binary(max_size=8), _args.map(lambda args: b"".join(encode_command(args)))
        ),
        max_size=20,
    ),
    st.integers(0, 10),
)
def test_the_plain_relay_takes_only_commands_the_parser_reads_the_same_way(pieces: list[bytes], limit: int) -> None:
    """What complete_commands lets through unparsed is exactly the parser's next commands, and the rest
    parses as it would have after them: relaying them as they came changes nothing."""
    data = b"".join(pieces)
    found = complete_commands(data, PROTO_MAX_BULK_LEN, limit)
    assert len(found) <= limit
    end = found[-1][0] if found else 0
    taken, error = _parsed(data[:end])
    assert error is None and [c[0] for c in taken] == [name for _, name in found]
    rest, rest_error = _parsed(data[end:])
    assert (taken + rest, rest_error) == _parsed(data)


def _read_as_the_connection_reads(chunks: list[bytes]) -> tuple[list[list[bytes]], str | None]:
    """The commands of `chunks` in order as connection.py reads them (every name plain), and the error.

    While the parser holds nothing, complete commands and one that runs past the read are relayed
    (here: collected) as bytes; the rest goes to the parser until it holds nothing again. Relayed
    bytes are parsed back at the end, to show what Redis reads from them.
    """
    parser = RequestParser(1 << 20)
    relayed, rest, carry = b"", None, b""
    order: list[int | list[bytes]] = []  # an end in `relayed`, or a command the parser read
    for chunk in chunks:
        data, carry = carry + chunk, b""
        try:
            if rest is not None:
                stop = continue_command(data, 0, rest, PROTO_MAX_BULK_LEN, 1 << 20)
                relayed += data[:stop]
                if not rest.done:
                    carry = data[stop:]
                    continue
                rest = None
                order.append(len(relayed))
                data = data[stop:]
            if parser.buffered == 0:
                found = complete_commands(data, PROTO_MAX_BULK_LEN, 1 << 30)
                order += [len(relayed) + stop for stop, _ in found]
                end = found[-1][0] if found else 0
                started = unfinished_command(data, end, PROTO_MAX_BULK_LEN, 1 << 20)
                if started is not None:
                    _name, rest, stop = started
                    relayed += data[:stop]
                    carry = data[stop:]
                    continue
                relayed += data[:end]
                data = data[end:]
            if data:
                parser.feed(data)
                while (command := parser.gets()) is not None:
                    order.append(command)
        except ProtocolError as exc:
            return _commands(relayed, order), str(exc)
    return _commands(relayed, order), None


def _commands(relayed: bytes, order: list[int | list[bytes]]) -> list[list[bytes]]:
    out, start = [], 0
    for item in order:
        if isinstance(item, int):
            (command,), error = _parsed(relayed[start:item])
            assert error is None
            out.append(command)
            start = item
        else:
            out.append(item)
    return out


# A command broken off anywhere, so what follows lands inside it: in a bulk header, a payload, its CRLF.
_cut_commands = st.tuples(_args, st.integers(0, 300)).map(lambda t: b"".join(encode_command(t[0]))[: t[1]])


@given(
    st.lists(
        st.one_of(
            _args.map(lambda args: b"".join(encode_command(args))),
            _cut_commands,
            st.sampled_from(_TOKENS).map(lambda token: b"*2\r\n$3\r\nSET\r\n" + token),
            st.sampled_from(_TOKENS),
        ),
        max_size=12,
    ),
    st.lists(st.integers(1, 40), min_size=1, max_size=12),
)
def test_commands_relayed_as_they_arrive_read_as_the_parser_reads_them_however_the_reads_cut_them(
    pieces: list[bytes], cuts: list[int]
) -> None:
    """Commands relayed as they came, one running past a read relayed as its bytes arrive, and the rest
    parsed: Redis and the runtime together get exactly the commands the parser alone would read, and
    broken framing inside a command relayed as it arrived is the parser's own error at the same place."""
    data = b"".join(pieces)
    chunks: list[bytes] = []
    for cut in cuts * (len(data) // sum(cuts) + 1):
        position = sum(map(len, chunks))
        if position >= len(data):
            break
        chunks.append(data[position : position + cut])
    assert _read_as_the_connection_reads(chunks) == _parsed(data)


@given(st.binary(min_size=1, max_size=200), st.sampled_from([b"*", b"*1\r\n$", b""]))
def test_a_count_or_line_without_crlf_is_never_buffered_past_64_kb(junk: bytes, head: bytes) -> None:
    parser = RequestParser(1 << 30)
    filler = junk.replace(b"\r", b"").replace(b"\n", b"") or b"1"
    with pytest.raises(ProtocolError, match="too big"):
        parser.commands(head)
        for _ in range(100):  # 200 KB without a line end
            parser.commands(filler * (2000 // len(filler) + 1))
            assert parser.buffered <= 64 * 1024 + 4096


_QUOTED_ALPHABET = st.sampled_from(list(" ab\"'\\xn41\t"))


def _quote(arg: bytes) -> bytes:
    """An argument written in redis-cli's quoted form (sdscatrepr)."""
    out = b'"'
    for byte in arg:
        if byte in b'\\"':
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out += bytes([byte])
        else:
            out += b"\\x%02x" % byte
    return out + b'"'


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=5))
def test_quoted_inline_arguments_split_back_to_the_bytes(args: list[bytes]) -> None:
    assert split_inline(b" ".join(_quote(a) for a in args)) == args


# RG.CLUSTERSET's topology (gears/cluster.py): any arguments, or a valid topology with any one of them replaced,
# give a topology whose shards are where the arguments say, or RedisGears' "Could not parse" with what is wrong.
_TOPOLOGY = [b"RG.CLUSTERSET", *[b"NO-USED"] * 5, b"1", b"NO-USED", b"2",
             b"NO-USED", b"1", b"NO-USED", b"0", b"8192", b"NO-USED", b"pw@127.0.0.1:7000", b"UNIXADDR", b"/tmp/s",
             b"NO-USED", b"2", b"NO-USED", b"8193", b"16383", b"NO-USED", b"pw@[::1]:7001"]  # fmt: skip
_TOPOLOGY_NUMBERS = [b"0", b"1", b"2", b"-1", b"16383", b"16384", b"65535", b"65536", b"1e3", b" 1", b"+1", b"1.5"]
_TOPOLOGY_WORDS = [*_TOPOLOGY_NUMBERS, b"NO-USED", b"UNIXADDR", b"@h:1", b"p@:1", b"p@h:", b"p@[::1]:70000",
                   b"a" * 41, b""]  # fmt: skip


def _topology_or_its_error(args: list[bytes]) -> None:
    from gearcam.runtime.gears.builder import GearsError
    from gearcam.runtime.gears.cluster import parse_topology

    try:
        topology = parse_topology(args)
    except GearsError as exc:
        assert str(exc).startswith("Could not parse cluster set arguments"), exc
        return
    assert len(topology.my_id) == 40 and len(topology.nodes) <= topology.ranges
    for node in topology.nodes.values():
        assert len(node.id) == 40 and 0 <= node.min_slot <= node.max_slot < 16384 and 0 <= node.port < 65536
    assert topology.set_command is not None and topology.set_command[1:] == args[1:]


@given(st.lists(st.one_of(st.sampled_from(_TOPOLOGY_WORDS), st.binary(max_size=12)), max_size=30))
def test_any_cluster_set_arguments_give_a_topology_or_say_what_is_wrong(args: list[bytes]) -> None:
    _topology_or_its_error([b"RG.CLUSTERSET", *args])


@given(st.integers(1, len(_TOPOLOGY) - 1), st.one_of(st.sampled_from(_TOPOLOGY_WORDS), st.binary(max_size=12)))
def test_a_topology_with_one_argument_changed_gives_a_topology_or_says_what_is_wrong(at: int, value: bytes) -> None:
    args = list(_TOPOLOGY)
    args[at] = value
    _topology_or_its_error(args)


# Against live servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed(backing: Backing) -> Iterator[Runtime]:
    """A runtime of its own: AI.CONFIG and friends may change its settings."""
    front = Runtime(free_port(), backing.url)
    front.start()
    yield front
    front.stop()


class Pinger:
    """Another client that PINGs every 20 ms and keeps the slowest answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            self.sock.sendall(b"PING\r\n")
            assert self.sock.recv(64) == b"+PONG\r\n"
            self.worst = max(self.worst, time.perf_counter() - start)
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.worst


@pytest.fixture(scope="module")
def pinger(fuzzed: Runtime) -> Iterator[Pinger]:
    watcher = Pinger(fuzzed.port)
    yield watcher
    assert watcher.stop() < _PING_LIMIT


class Conversation:
    """One client connection kept across examples: it must stay usable after every fuzzed command."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.reader = hiredis.Reader(replyError=RawError)

    def pipeline(self, *commands: list[bytes]) -> list[object]:
        self.sock.sendall(b"".join(b"".join(encode_command(c)) for c in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            reply = self.reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            data = self.sock.recv(1 << 20)
            assert data, f"the runtime closed the connection after {commands[1][:6]!r}"
            self.reader.feed(data)
        return replies


@pytest.fixture(scope="module")
def conversation(fuzzed: Runtime) -> Iterator[Conversation]:
    talk = Conversation(fuzzed.port)
    talk.pipeline([b"AI.MODELSTORE", b"m", b"ONNX", b"CPU", b"BLOB", add_model()],
                  [b"AI.TENSORSET", b"a", b"FLOAT", b"2", b"VALUES", b"1", b"2"],
                  [b"AI.TENSORSET", b"b", b"FLOAT", b"1", b"2", b"VALUES", b"1", b"2"])  # fmt: skip
    yield talk
    talk.sock.close()


_NUMBERS = [b"0", b"1", b"2", b"3", b"-1", b"4294967296", b"9223372036854775807", b"9223372036854775808",
            b"1180591620717411303424", b"1e3", b"0x10", b"", b" 1", b"1.5", b"nan", b"inf"]  # fmt: skip
_WORDS = [b"FLOAT", b"DOUBLE", b"INT8", b"INT16", b"INT32", b"INT64", b"UINT8", b"UINT16", b"BOOL", b"STRING",
          b"BLOB", b"VALUES", b"META", b"ONNX", b"TFLITE", b"NOPE", b"CPU", b"GPU", b"GPU:0", b"CPU:99999999999",
          b"TAG", b"BATCHSIZE", b"MINBATCHSIZE", b"MINBATCHTIMEOUT", b"INPUTS", b"OUTPUTS", b"KEYS", b"ARGS",
          b"TIMEOUT", b"ENTRY_POINTS", b"LOAD", b"PERSIST", b"ROUTING", b"|>", b"AI.TENSORSET", b"AI.TENSORGET",
          b"AI.MODELEXECUTE", b"AI.SCRIPTEXECUTE", b"RESETSTAT", b"a", b"b", b"m", b"s", b"nokey", b"{a}"]  # fmt: skip
_COMMANDS = [b"AI.TENSORSET", b"AI.TENSORGET", b"AI.MODELSTORE", b"AI.MODELSET", b"AI.MODELGET", b"AI.MODELDEL",
             b"AI.MODELEXECUTE", b"AI.MODELRUN", b"AI.SCRIPTSTORE", b"AI.SCRIPTSET", b"AI.SCRIPTGET",
             b"AI.SCRIPTDEL", b"AI.SCRIPTEXECUTE", b"AI.SCRIPTRUN", b"AI.DAGEXECUTE", b"AI.DAGEXECUTE_RO",
             b"AI.DAGRUN", b"AI.DAGRUN_RO", b"AI.INFO", b"AI._MODELSCAN", b"AI._SCRIPTSCAN"]  # fmt: skip
_argument = st.one_of(
    st.sampled_from(_NUMBERS), st.sampled_from(_WORDS), st.binary(max_size=16), st.sampled_from([add_model()])
)


def _answered_between_two_others(conversation: Conversation, pinger: Pinger, command: list[bytes]) -> None:
    before, reply, after = conversation.pipeline([b"SET", b"fuzz:marker", b"before"], command, [b"GET", b"fuzz:marker"])
    assert before == b"OK" and after == b"before"
    if isinstance(reply, RawError):
        assert str(reply) and "internal error" not in str(reply), reply  # a few RedisAI errors have no ERR
    assert pinger.worst < _PING_LIMIT


@given(st.sampled_from(_COMMANDS), st.lists(_argument, max_size=14))
def test_any_ai_command_gets_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, command: bytes, args: list[bytes]
) -> None:
    _answered_between_two_others(conversation, pinger, [command, *args])


@pytest.fixture
def hooked(conversation: Conversation) -> Iterator[None]:
    """A pass-through sync hook on every AI.* command fuzzed: each goes through a Gears execution and call_next()."""
    code = "".join(
        f"GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='{name.decode()}', mode='sync')\n"
        for name in _COMMANDS
    )
    (loaded,) = conversation.pipeline([b"RG.PYEXECUTE", code.encode(), b"ID", b"fuzz-hooks"])
    assert loaded == b"OK", loaded
    yield
    (sessions,) = conversation.pipeline([b"RG.PYDUMPSESSIONS", b"SESSIONS", b"fuzz-hooks"])
    (dumped,) = conversation.pipeline([b"RG.DUMPREGISTRATIONS"])
    triggered = [entry[7][3] for entry in dumped if entry[1] in sessions[0][-1]]
    for reg_id in sessions[0][-1]:
        conversation.pipeline([b"RG.UNREGISTER", reg_id])
    assert len(triggered) == len(_COMMANDS) and sum(triggered) > 0  # the fuzzed commands did go through the hooks


@given(st.sampled_from(_COMMANDS), st.lists(_argument, max_size=14))
def test_any_ai_command_through_a_command_hook_gets_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, hooked: None, command: bytes, args: list[bytes]
) -> None:
    _answered_between_two_others(conversation, pinger, [command, *args])


# Commands Gears code sends through a hook in the fuzz below: Redis' (the hook's call_next() runs them in the
# calling worker) and RedisAI's (the runtime runs them).
_CODE_HOOKED = [b"SET", b"GET", b"APPEND", b"HSET", b"INCR", b"DEL", b"EXPIRE", b"XADD", b"LPUSH", b"AI.TENSORSET",
                b"AI.TENSORGET"]  # fmt: skip
_CODE_ARGS = [b"fuzz:k", b"fuzz:h", b"fuzz:s", b"fuzz:t", b"FLOAT", b"INT8", b"VALUES", b"BLOB", b"META", b"*", b"1",
              b"-1", b"2", b"f", b"PX"]  # fmt: skip


@pytest.fixture
def code_hooked(conversation: Conversation) -> Iterator[None]:
    """Pass-through sync hooks on _CODE_HOOKED and a trigger whose step execute()s its arguments: each fuzzed
    command goes from Gears code to the runtime, through a hook's execution, and back to the worker."""
    code = "".join(
        f"GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='{name.decode()}', mode='sync')\n"
        for name in _CODE_HOOKED
    ) + (
        "def run(x):\n"
        "    try:\n"
        "        return str(execute(*x[1:]))\n"
        "    except Exception as e:\n"
        "        return 'error: ' + str(e)\n"
        "GB('CommandReader').map(run).register(trigger='fuzz-execute', mode='sync')\n"
    )
    (loaded,) = conversation.pipeline([b"RG.PYEXECUTE", code.encode(), b"ID", b"fuzz-code-hooks"])
    assert loaded == b"OK", loaded
    yield
    (sessions,) = conversation.pipeline([b"RG.PYDUMPSESSIONS", b"SESSIONS", b"fuzz-code-hooks"])
    (dumped,) = conversation.pipeline([b"RG.DUMPREGISTRATIONS"])
    data = [dict(zip(entry[7][::2], entry[7][1::2], strict=True)) for entry in dumped if entry[1] in sessions[0][-1]]
    hooks = [d[b"numTriggered"] for d in data if b"hook" in d[b"args"][::2]]
    for reg_id in sessions[0][-1]:
        conversation.pipeline([b"RG.UNREGISTER", reg_id])
    assert len(hooks) == len(_CODE_HOOKED) and sum(hooks) > 0  # the fuzzed calls did go through the hooks


@given(
    st.sampled_from(_CODE_HOOKED),
    st.lists(st.one_of(st.sampled_from(_CODE_ARGS), st.binary(max_size=12)), max_size=8),
)
def test_gears_codes_calls_through_command_hooks_get_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, code_hooked: None, command: bytes, args: list[bytes]
) -> None:
    before, reply, after = conversation.pipeline(
        [b"SET", b"fuzz:marker", b"before"], [b"RG.TRIGGER", b"fuzz-execute", command, *args], [b"GET", b"fuzz:marker"]
    )
    assert before == b"OK" and after == b"before"
    assert isinstance(reply, list) and len(reply) == 1, reply  # the step's one result: the reply or the error's text
    assert b"internal error" not in reply[0] and b"Traceback" not in reply[0], reply
    assert pinger.worst < _PING_LIMIT


@given(
    st.sampled_from([b"RG.INNERMSGCOMMAND", b"RG.HELLO", b"RG.CLUSTERSETFROMSHARD"]),
    st.lists(st.one_of(st.sampled_from(_TOPOLOGY_NUMBERS), st.binary(max_size=12)), max_size=8),
)
def test_the_shards_own_commands_get_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, command: bytes, args: list[bytes]
) -> None:
    """At most 8 arguments: a CLUSTERSETFROMSHARD that short is refused before it could name a shard to dial."""
    _answered_between_two_others(conversation, pinger, [command, *args])


# RedisGears' commands but those that dial other shards (RG.CLUSTERSET and RG.CLUSTERSETFROMSHARD, above) and the
# blocking wait for an execution (RG.GETRESULTSBLOCKING of one that never ends would hold the connection by design).
_RG_COMMANDS = [b"RG.PYEXECUTE", b"RG.TRIGGER", b"RG.TRIGGERONKEY", b"RG.UNREGISTER", b"RG.DUMPREGISTRATIONS",
                b"RG.DUMPEXECUTIONS", b"RG.GETEXECUTION", b"RG.GETRESULTS", b"RG.DROPEXECUTION",
                b"RG.ABORTEXECUTION", b"RG.PAUSEREGISTRATIONS", b"RG.UNPAUSEREGISTRATIONS",
                b"RG.CLEARREGISTRATIONSSTATS", b"RG.PYDUMPREQS", b"RG.PYEXPORTREQ", b"RG.PYIMPORTREQ",
                b"RG.PYDUMPSESSIONS", b"RG.PYSTATS", b"RG.PYPROFILE", b"RG.CONFIGGET", b"RG.CONFIGSET",
                b"RG.INFOCLUSTER", b"RG.REFRESHCLUSTER", b"RG.NETWORKTEST", b"RG.DUMPPLUGINS",
                b"RG.PYEXECUTEREMOTE", b"RG.PYFREEINTERPRETER"]  # fmt: skip
# No REQUIREMENTS: installing a made-up package would wait on a package index this test must not reach.
_RG_WORDS = [b"UNBLOCKING", b"ID", b"DESCRIPTION", b"UPGRADE", b"REPLACE_WITH", b"SESSIONS", b"VERBOSE", b"TS",
             b"DEAD", b"SHARD", b"CLUSTER", b"ABORTPENDING", b"STATS", b"RESET", b"MaxExecutions",
             b"MaxExecutionsPerRegistration", b"ExecutionMaxIdleTime", b"ProfileExecutions",
             b"PythonAttemptTraceback", b"SendMsgRetries", b"ExecutionThreads", b"fuzz-trigger", b"fuzz-key",
             b"GB().run()", b"GB('ShardsIDReader').run()", b"GB('CommandReader').register(trigger='fuzz-trigger')",
             b"GB().register(prefix='fuzz:*')", b"0000000000000000000000000000000000000000-1"]  # fmt: skip


@given(
    st.sampled_from(_RG_COMMANDS),
    st.lists(st.one_of(st.sampled_from(_RG_WORDS), st.sampled_from(_NUMBERS), st.binary(max_size=12)), max_size=8),
)
def test_any_gears_command_gets_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, command: bytes, args: list[bytes]
) -> None:
    _answered_between_two_others(conversation, pinger, [command, *args])


_CONFIG_ARGS = [b"BACKENDSPATH", b"MODEL_CHUNK_SIZE", b"GET", b"LOADBACKEND", b"/nonexistent", b"0", b"-1", b"1",
                b"4294967296", b"x", b""]  # fmt: skip


@given(st.lists(st.sampled_from(_CONFIG_ARGS), max_size=4))
def test_ai_config_gets_a_reply_and_the_connection_stays_usable(
    conversation: Conversation, pinger: Pinger, args: list[bytes]
) -> None:
    before, reply, after = conversation.pipeline([b"PING"], [b"AI.CONFIG", *args], [b"PING"])
    assert before == after == b"PONG"
    if isinstance(reply, RawError):
        assert "internal error" not in str(reply), reply
    conversation.pipeline([b"AI.CONFIG", b"MODEL_CHUNK_SIZE", str(511 * 1024 * 1024).encode()])


# CONFIG of the runtime's own settings (runtime/own_settings.py), and the backing Redis' beside them. No value
# here binds a port: a port that parses is taken elsewhere or is 0, which the plain-only runtime refuses.
_OWN_NAMES = [b"port", b"tls-port", b"protected-mode", b"tls-cert-file", b"tls-key-file", b"tls-key-file-pass",
              b"tls-ca-cert-file", b"tls-auth-clients", b"tls-protocols", b"tls-ciphers", b"tls-prefer-server-ciphers",
              b"tls-dh-params-file", b"bind", b"unixsocket", b"tls-client-cert-file", b"tls-ciphersuites", b"PORT",
              b"maxmemory-samples", b"nosuch", b"tls-*", b"*port*", b"?ort", b"[pt]*", b"client-query-buffer-limit",
              b"maxmemory-clients", b"*clients*", b"maxclients", b"MAXCLIENTS"]  # fmt: skip
_OWN_VALUES = [b"", b"x", b"yes", b"no", b"optional", b"0", b"-1", b"70000", b"/nonexistent", b"TLSv1.2", b"TLSv9",
               b"NOPE", b"5", b"1mb", b"\xff\x00", b"127.0.0.1 -::1", b"-203.0.113.7", b"127.0.0.1 127.0.0.1", b"-",
               b"127.0.0.1 - x", b"10%", b"2gb"]  # fmt: skip


@given(st.sampled_from([b"GET", b"SET"]), st.lists(st.one_of(st.sampled_from(_OWN_NAMES),
                                                            st.sampled_from(_OWN_VALUES)), max_size=6))  # fmt: skip
def test_config_of_the_runtime_own_settings_gets_a_reply_and_changes_nothing_it_refuses(
    fuzzed: Runtime, conversation: Conversation, pinger: Pinger, sub: bytes, args: list[bytes]
) -> None:
    for i in range(0, len(args) - 1, 2):
        if sub == b"SET" and args[i].lower() == b"port" and args[i + 1].isdigit() and args[i + 1] != b"0":
            args[i + 1] = b"x"  # never a port it could move to
        if sub == b"SET" and args[i].lower() == b"bind" and args[i + 1] == b"0":
            args[i + 1] = b"x"  # 0.0.0.0: never an address it could move to
        if sub == b"SET" and args[i].lower() == b"maxmemory-clients" and args[i + 1] in (b"5", b"1mb"):
            args[i + 1] = b"x"  # never so small that this conversation's own pipelines are over it
        if sub == b"SET" and args[i].lower() == b"maxclients" and args[i + 1].isdigit() and int(args[i + 1]) < 100:
            args[i + 1] = b"x"  # never so few that the conversation's or the pinger's next connection is refused
    watched = [b"port", b"tls-port", b"protected-mode", b"tls-cert-file", b"tls-protocols", b"maxmemory-samples"]
    before, reply, after, settings_after = conversation.pipeline(
        [b"CONFIG", b"GET", *watched], [b"CONFIG", sub, *args], [b"PING"], [b"CONFIG", b"GET", *watched]
    )
    assert after == b"PONG"
    if isinstance(reply, RawError):
        assert "internal error" not in str(reply), reply
        if sub == b"SET":
            assert settings_after == before  # refused: nothing changed
    assert dict(zip(settings_after[::2], settings_after[1::2], strict=True))[b"port"] == str(fuzzed.port).encode()
    conversation.pipeline([b"CONFIG", b"SET", b"protected-mode", b"yes", b"tls-port", b"0", b"tls-protocols", b"",
                           b"bind", b"127.0.0.1 -::1", b"client-query-buffer-limit", b"1gb", b"maxmemory-clients", b"1gb"],
                          [b"CONFIG", b"SET", b"maxmemory-samples", b"5"], [b"CONFIG", b"SET", b"maxclients", b"1000"])  # fmt: skip
    assert pinger.worst < _PING_LIMIT


_FRAME_PIECES = [b"*1\r\n", b"*2\r\n", b"*3\r\n", b"$4\r\nPING\r\n", b"$3\r\nGET\r\n", b"$1\r\nk\r\n", b"$0\r\n\r\n",
                 b"$2147483648\r\n", b"*2147483647\r\n", b"PING\r\n", b'ECHO "a\\x41"\r\n', b"$-1\r\n", b"*-1\r\n",
                 b"\r\n", b"$", b"*", b"x"]  # fmt: skip


@given(st.lists(st.sampled_from(_FRAME_PIECES), min_size=1, max_size=8))
def test_any_frame_leaves_the_runtime_serving_others(fuzzed: Runtime, pinger: Pinger, pieces: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", fuzzed.port), timeout=5) as sock:
        sock.sendall(b"".join(pieces))
        sock.settimeout(0.05)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    assert pinger.worst < _PING_LIMIT


@pytest.fixture(scope="module")
def two_servers(fuzzed: Runtime, backing: Backing) -> tuple[int, int]:
    """The runtime's port and its backing redis-server's."""
    return fuzzed.port, backing.port


@given(st.lists(_QUOTED_ALPHABET, max_size=16).map("".join))
def test_inline_commands_split_as_redis_server_splits_them(two_servers: tuple[int, int], line: str) -> None:
    frame = b"ECHO " + line.encode() + b"\r\nPING\r\n"
    assert _inline(two_servers[0], frame) == _inline(two_servers[1], frame)


def _inline(port: int, frame: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(frame)
        out = b""
        sock.settimeout(2)
        try:
            while not (out.endswith(b"+PONG\r\n") or out.endswith(b"request\r\n")):
                data = sock.recv(65536)
                if not data:
                    break
                out += data
        except TimeoutError:
            pass
        return out

"""How CLIENT LIST's lines and CLIENT KILL's filters are translated between the runtime's clients and their links."""

from __future__ import annotations

import socket

from gearcam.runtime.clients import ClientDirectory, Listed, listed_address

LINE = (
    b"id=7 addr=/tmp/r.sock:0 laddr=/tmp/r.sock:0 fd=9 name=cam age=3 idle=0 flags=N db=0 cmd=client|list user=default"
)


def directory() -> ClientDirectory:
    clients = ClientDirectory(b"gearcam-runtime")
    clients.linked("unix:/tmp/r.sock", seven := Listed("10.0.0.5:51000", "10.0.0.1:6379"))
    clients.add(7, seven)
    clients.linked("127.0.0.1:40001", eight := Listed("10.0.0.6:52000", "10.0.0.1:6379"))
    clients.add(8, eight)
    return clients


def test_a_runtime_clients_line_gets_its_addresses_and_internal_links_are_left_out() -> None:
    internal = b"id=3 addr=/tmp/r.sock:0 laddr=/tmp/r.sock:0 fd=5 name=gearcam-runtime age=9 cmd=subscribe"
    other = b"id=99 addr=192.168.1.9:4000 laddr=127.0.0.1:6380 fd=12 name=replica cmd=replconf"
    out = directory().rewrite(b"\n".join([internal, LINE, other]) + b"\n")
    assert out.splitlines() == [
        LINE.replace(b"addr=/tmp/r.sock:0 laddr=/tmp/r.sock:0", b"addr=10.0.0.5:51000 laddr=10.0.0.1:6379"),
        other,
    ]
    assert directory().rewrite_line(internal) == internal  # a line of its own stays as it came


def test_kill_filters_naming_a_runtime_client_become_its_links_id() -> None:
    clients = directory()
    assert clients.kill_arguments([b"CLIENT", b"KILL", b"10.0.0.5:51000"]) == [b"CLIENT", b"KILL", b"ID", b"7"]
    assert clients.kill_arguments([b"CLIENT", b"KILL", b"1.2.3.4:5"]) == [b"CLIENT", b"KILL", b"1.2.3.4:5"]
    new = [b"CLIENT", b"KILL", b"addr", b"10.0.0.6:52000", b"SKIPME", b"no"]
    assert clients.kill_arguments(new) == [b"CLIENT", b"KILL", b"ID", b"8", b"SKIPME", b"no"]
    odd = [b"CLIENT", b"KILL", b"ADDR", b"10.0.0.6:52000", b"USER"]  # Redis' own syntax error, left to it
    assert clients.kill_arguments(odd) == [b"CLIENT", b"KILL", b"ID", b"8", b"USER"]
    clients.remove(8)
    assert clients.kill_arguments(new) == new


def test_slowlog_addresses_follow_links_on_tcp_only() -> None:
    clients = directory()
    assert clients.as_listed(b"127.0.0.1:40001") == b"10.0.0.6:52000"
    assert clients.as_listed(b"/tmp/r.sock:0") == b"/tmp/r.sock:0"  # every unix link has it: no client to name
    assert clients.as_listed(b"unix:/tmp/r.sock") == b"unix:/tmp/r.sock"  # as MONITOR names it: the same
    clients.remove(8)
    assert clients.as_listed(b"127.0.0.1:40001") == b"10.0.0.6:52000"  # its entries outlive the client


def test_addresses_are_written_as_redis_writes_them() -> None:
    assert listed_address(("127.0.0.1", 6379), socket.AF_INET) == "127.0.0.1:6379"
    assert listed_address(("::1", 6379, 0, 0), socket.AF_INET6) == "[::1]:6379"
    assert listed_address("/run/gearcam.sock", socket.AF_UNIX) == "/run/gearcam.sock:0"

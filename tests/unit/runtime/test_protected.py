"""gearcam.runtime.protected: who protected mode turns away, and what it tells them."""

from __future__ import annotations

import pytest

from gearcam.runtime.protected import DENIED, is_local, refuses


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (("127.0.0.1", 5000), True),
        (("127.0.0.2", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        ("", True),  # a unix socket
        ("/run/gearcam.sock", True),
        (("10.254.254.1", 5000), False),
        (("192.168.1.20", 5000), False),
        (("fe80::1%eth0", 5000, 0, 2), False),
        (("::ffff:10.0.0.1", 5000, 0, 0), False),
        (("not-an-address", 1), False),
    ],
)
def test_loopback_and_unix_socket_peers_are_local(peer: object, local: bool) -> None:
    assert is_local(peer) is local


def test_protected_mode_refuses_only_remote_peers_of_a_password_less_redis() -> None:
    remote = ("10.254.254.1", 5000)
    assert refuses(True, False, remote)
    assert not refuses(True, True, remote)  # a password is set: AUTH protects it
    assert not refuses(False, False, remote)  # turned off on purpose
    assert not refuses(True, False, ("127.0.0.1", 5000))


def test_the_denied_reply_gives_redis_facts_and_the_ways_out() -> None:
    assert DENIED.startswith("DENIED ")
    for fact in ("protected mode is enabled and no password is set for the default user",
                 "connections are only accepted from the loopback interface",
                 "--protected-mode no", "runtime.protected_mode", "requirepass", "--host 127.0.0.1",
                 "MAKE SURE"):  # fmt: skip
        assert fact in DENIED
    assert "\r" not in DENIED and "\n" not in DENIED

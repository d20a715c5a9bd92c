"""Which ACL DRYRUN errors mean the runtime cannot check a user (docs/runtime.md, "ACLs and the runtime's own commands").

Redis 6.2 (the modules' own Redis) has no DRYRUN, and no 6.2 server exists here to ask: its text
is Redis 6.2's subcommand error. The NOPERM case runs against a real Redis in tests/runtime/test_acl.py.
"""

from __future__ import annotations

import pytest

from gearcam.runtime.acl import _dryrun_unavailable


@pytest.mark.parametrize(
    "message",
    [
        "ERR Unknown subcommand or wrong number of arguments for 'DRYRUN'. Try ACL HELP.",  # Redis 6.2
        "ERR unknown subcommand 'DRYRUN'. Try ACL HELP.",  # Redis 7.x, were it renamed away
        "NOPERM User gearcam-rt has no permissions to run the 'acl|dryrun' command",
    ],
)
def test_errors_about_dryrun_itself_mean_no_check(message: str) -> None:
    assert _dryrun_unavailable(message)


@pytest.mark.parametrize(
    "message",
    [
        "ERR User 'gone' not found",  # the client's user was deleted: refused as such
        "ERR wrong number of arguments for 'set' command",  # the probe's arity: the command's own check answers
        "ERR Command 'nosuch' not found",
    ],
)
def test_errors_about_the_probe_are_answers(message: str) -> None:
    assert not _dryrun_unavailable(message)

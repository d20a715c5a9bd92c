"""How the ACL checker reads Redis' answers (docs/runtime.md, "ACLs and the runtime's own commands").

Redis 6.2 (the modules' own Redis) has no ACL DRYRUN and writes ACL GETUSER's keys as a list; no 6.2
server exists here to ask, so its replies are written out below. The Redis 7 cases, and a runtime
user refused DRYRUN, run against a real Redis in tests/runtime/test_acl.py.
"""

from __future__ import annotations

import pytest

from gearcam.runtime.acl import _dryrun_unavailable, _every_right, dryrun_answer, explain_refused_rule
from gearcam.runtime.resp import ErrorReply


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


def _getuser(commands: bytes, keys: object, *extra: object) -> list[object]:
    return [b"flags", [b"on", b"allkeys", b"allchannels", b"allcommands", b"nopass"], b"passwords", [],
            b"commands", commands, b"keys", keys, b"channels", [b"*"], *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("info", "free"),
    [
        (_getuser(b"+@all", [b"*"]), True),  # Redis 6.2's default user: keys as a list of bare patterns
        (_getuser(b"+@all", [b"user:*"]), False),
        (_getuser(b"+@all -eval", [b"*"]), False),
        (_getuser(b"+@all", b"~*", b"selectors", []), True),  # Redis 7
        (_getuser(b"+@all", b"%R~*", b"selectors", []), False),
        (_getuser(b"+@all", b"~*", b"selectors", [[b"commands", b"-@all"]]), False),
        (None, False),  # no such user
    ],
)
def test_only_every_command_on_every_key_goes_unchecked(info: object, free: bool) -> None:
    assert _every_right(info) is free


@pytest.mark.parametrize(
    "frame",
    [
        b"+OK\r\n",
        b"-ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL\r\n",
        b"-ERR Error in ACL SETUSER modifier '(+get ~x': Unclosed selector\r\n",
        b"-NOPERM this user has no permissions to run the 'acl|setuser' command\r\n",
    ],
)
def test_setuser_replies_that_name_no_served_command_pass_unchanged(frame: bytes) -> None:
    assert explain_refused_rule(frame) == frame


def test_a_refused_rule_in_a_selector_is_explained_by_the_command_it_names() -> None:
    frame = (
        b"-ERR Error in ACL SETUSER modifier '(~k +get -AI.ScriptExecute)': Unknown command or category name in ACL\r\n"
    )
    explained = explain_refused_rule(frame).decode()
    assert explained.startswith("-ERR Error in ACL SETUSER modifier '(~k +get -AI.ScriptExecute)': 'ai.scriptexecute' ")
    assert "checked as 'eval', 'get' on the script, its keys and inputs, 'set' on each output:" in explained
    assert explained.endswith("\r\n") and explained.count("\r\n") == 1


def test_dryrun_answers_are_redis_70_texts_of_the_refusals() -> None:
    key = ErrorReply("NOPERM this user has no permissions to access the 'u:k' key used by 'ai.tensorset'")
    command = ErrorReply("NOPERM this user has no permissions to run the 'rg.pyexecute' command")
    assert dryrun_answer(key) == "This user has no permissions to access the 'u:k' key"
    assert dryrun_answer(command) == "This user has no permissions to run the 'rg.pyexecute' command"

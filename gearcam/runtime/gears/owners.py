"""Who Gears code runs as: the ACL user that ran RG.PYEXECUTE, never the runtime itself.

A session remembers its owner (`ACL WHOAMI` of the client that sent RG.PYEXECUTE).
The owner's worker connects to the backing Redis as that user when the user needs no
password; otherwise as a companion user, `gearcam-gears-<owner>`, that the runtime
creates with the owner's rules (commands, keys, channels, selectors) and a fresh random
password known only to that worker. Redis then enforces the owner's rights on every
`execute()`, and nothing in a worker knows the runtime's credentials. The companion's
rules are copied when the worker starts (at RG.PYEXECUTE for a new owner, at every
runtime start, and when a worker is replaced).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gearcam.redis_text import text
from gearcam.runtime.acl import rule_tokens, user_fields
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.relay import Address

__all__ = ["COMPANION_PREFIX", "companion_rules", "worker_address"]

COMPANION_PREFIX = "gearcam-gears-"

Call = Callable[..., Any]


def companion_rules(info: Any) -> list[str]:
    """ACL SETUSER rules that give another user exactly the rights in `ACL GETUSER`'s reply."""
    fields = user_fields(info)
    flags = [text(f) for f in fields.get("flags", [])]
    rules = ["on" if "on" in flags else "off"]
    rules += text(fields.get("commands", b"")).split()
    keys = rule_tokens(fields.get("keys"), "~")
    rules += keys or ["resetkeys"]
    if "allkeys" in flags and "~*" not in rules:
        rules.append("~*")
    channels = rule_tokens(fields.get("channels"), "&")
    rules += channels or ["resetchannels"]
    if "allchannels" in flags and "&*" not in rules:
        rules.append("&*")
    for selector in fields.get("selectors") or []:
        sel = user_fields(selector)
        parts = text(sel.get("commands", b"")).split()
        parts += rule_tokens(sel.get("keys"), "~") + rule_tokens(sel.get("channels"), "&")
        rules.append("(" + " ".join(parts) + ")")
    return rules


def worker_address(call: Call, backing: Address, owner: str) -> Address:
    """Where and as whom the worker of `owner` connects to the backing Redis (see the module's docstring)."""
    try:
        info = call("ACL", "GETUSER", owner)
    except Exception as exc:
        raise GearsError(f"cannot read the ACL rules of user {owner!r} for its Gears code: {exc}") from None
    if info is None:
        raise GearsError(f"user {owner!r} does not exist any more; its Gears code cannot run")
    flags = [text(f) for f in user_fields(info).get("flags", [])]
    if "nopass" in flags:
        if owner == "default":
            return replace(backing, username=None, password=None)
        return replace(backing, username=owner, password="nopass")  # any password logs a nopass user in
    name = COMPANION_PREFIX + owner
    password = secrets.token_hex(32)
    try:
        call("ACL", "SETUSER", name, "reset", ">" + password, *companion_rules(info))
    except Exception as exc:
        raise GearsError(
            f"cannot give Gears code the rights of user {owner!r}: ACL SETUSER {name} failed ({exc}); the "
            "runtime's own user needs the ACL command"
        ) from None
    return replace(backing, username=name, password=password)

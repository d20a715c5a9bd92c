"""Helpers for the RG.* suites: bounded polls, reply decoding, and a clean Gears state per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conftest import wait_for

__all__ = ["counters", "pairs", "pyexecute", "registration", "registrations", "rg", "unregister_all", "wait_for"]


def pairs(flat: list[Any]) -> dict[str, Any]:
    """An alternating name/value array as a dict (names decoded)."""
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(flat[::2], flat[1::2], strict=True)}


def registrations(client: redis.Redis) -> list[dict[str, Any]]:
    out = []
    for entry in client.execute_command("RG.DUMPREGISTRATIONS"):
        reg = pairs(entry)
        reg["RegistrationData"] = pairs(reg["RegistrationData"])
        reg["RegistrationData"]["args"] = pairs(reg["RegistrationData"]["args"])
        out.append(reg)
    return out


def registration(client: redis.Redis, reg_id: bytes | None = None) -> dict[str, Any]:
    regs = registrations(client)
    if reg_id is None:
        assert len(regs) == 1, regs
        return regs[0]
    return next(r for r in regs if r["id"] == reg_id)


def counters(client: redis.Redis, reg_id: bytes | None = None) -> dict[str, Any]:
    return registration(client, reg_id)["RegistrationData"]


def unregister_all(client: redis.Redis) -> None:
    for reg in registrations(client):
        client.execute_command("RG.UNREGISTER", reg["id"])


def pyexecute(client: redis.Redis, code: str, *options: Any) -> Any:
    return client.execute_command("RG.PYEXECUTE", code, *options)


@pytest.fixture
def rg(r: redis.Redis) -> Iterator[redis.Redis]:
    """The runtime client with no registration left over before or after the test."""
    unregister_all(r)
    yield r
    unregister_all(r)

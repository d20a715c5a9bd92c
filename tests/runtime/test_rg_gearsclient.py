"""gearsclient (RedisGears' Python client): GearsRemoteBuilder against the runtime.

gearsclient pins redis==3.5.3, so it runs from its own virtualenv (.venv-gearsclient,
made by `scripts/bootstrap --dev`): a real second Python process that pickles its
functions with cloudpickle and sends them with RG.PYEXECUTE, as it would to RedisGears.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = ROOT / ".venv-gearsclient" / "bin" / "python"


def _remote(server_url: str, body: str) -> object:
    """Run `body` (which sets `out`) with gearsclient connected to the server; `out` comes back as JSON."""
    if not CLIENT_PYTHON.exists():
        pytest.skip(f"{CLIENT_PYTHON} is missing; `scripts/bootstrap --dev` creates it (requirements-gearsclient.txt)")
    program = (
        "import json, redis\n"
        "from gearsclient import GearsRemoteBuilder as GRB, execute, log\n"
        f"r = redis.Redis.from_url({server_url!r})\n"
        f"{body}\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(CLIENT_PYTHON), "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_remote_word_count_runs_and_returns_unpickled_records(r: redis.Redis, server_url: str) -> None:
    r.set("doc:1", "the cat saw the dog")
    r.set("doc:2", "the cat")
    out = _remote(
        server_url,
        "res, errs = GRB('KeysReader', r=r, addClientToRequirements=False)"
        ".flatmap(lambda x: x['value'].split()).countby().run('doc:*')\n"
        "out = [sorted((d['key'], d['value']) for d in res), errs]",
    )
    assert out == [[["cat", 2], ["dog", 1], ["saw", 1], ["the", 3]], []]


def test_a_remote_registration_reacts_to_writes_and_uses_the_clients_execute(r: redis.Redis, server_url: str) -> None:
    out = _remote(
        server_url,
        "out = GRB(r=r, addClientToRequirements=False)"
        ".foreach(lambda x: execute('SET', x['key'] + ':upper', x['value'].upper()))"
        ".register(prefix='name:*', eventTypes=['set']).decode()",
    )
    assert out == "OK"
    r.set("name:1", "tabby")
    assert wait_for(lambda: r.get("name:1:upper"), "the registration's write") == b"TABBY"
    reader = [reg for reg in r.execute_command("RG.DUMPREGISTRATIONS") if b"KeysReader" in reg]
    assert len(reader) == 1
    for registration in r.execute_command("RG.DUMPREGISTRATIONS"):
        r.execute_command("RG.UNREGISTER", registration[1])


def test_a_requirement_the_runtime_lacks_is_refused_by_name(server_url: str) -> None:
    out = _remote(
        server_url,
        "try:\n"
        "    GRB(r=r, requirements=['no-such-package-xyz'], addClientToRequirements=False).map(lambda x: x).run()\n"
        "    out = 'ran'\n"
        "except redis.ResponseError as exc:\n"
        "    out = str(exc)",
    )
    assert isinstance(out, str) and "no-such-package-xyz" in out

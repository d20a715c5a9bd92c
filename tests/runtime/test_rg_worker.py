"""Gears code in worker processes: RedisGears' script globals, REQUIREMENTS into the Gears virtualenv,
the owner's rights, and scripts that spin, block or eat memory without taking Gears down.

Each test that changes the Gears environment runs a runtime of its own over a copy of
.venv-gears, so nothing it installs reaches the project's virtualenv.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gearcam.runtime.gears.workers import worker_environment
from tests.allocation import FAULTS, faults_in_a_process, need_glibc
from tests.runtime.conftest import ROOT, Backing, Runtime, error_of, free_port
from tests.runtime.gears_helpers import counters, pairs, pyexecute, rg, wait_for

__all__ = ["rg"]

GEARS_VENV = ROOT / ".venv-gears"


def _need_gears_venv() -> None:
    if not (GEARS_VENV / "bin" / "python").exists():
        pytest.fail("no .venv-gears: run scripts/bootstrap --dev (it creates the Gears virtualenv)")


# A library of Gears steps as rgsync is one: it imports from `redisgears` and hands out closures.
LIBRARY = """\
from redisgears import executeCommand as execute
from redisgears import getMyHashTag as hashtag


def counter(name):
    def count(record):
        execute("INCR", "%s{%s}" % (name, hashtag()))
        return record

    return count
"""


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels built here with `pip wheel` from tiny local packages: one plain, one pinned against numpy 1.x,
    one that needs numpy 2 (which the Gears environment's own pin must refuse); gearcam-base 0.1 and 0.2
    with one that needs base 0.2 (an upgrade of what an environment has); and a library of steps (LIBRARY)."""
    root = tmp_path_factory.mktemp("wheel-sources")
    house = tmp_path_factory.mktemp("wheelhouse")
    packages = [
        ("gearcam-tiny", "0.1", "gearcam_tiny", "[]", "VALUE = 'tiny 0.1'\n"),
        ("gearcam-old-numpy", "0.1", "gearcam_old_numpy", '["numpy<2"]', "import numpy\nVALUE = numpy.__version__\n"),
        ("gearcam-new-numpy", "0.1", "gearcam_new_numpy", '["numpy>=2"]', "VALUE = 'needs numpy 2'\n"),
        ("gearcam-base", "0.1", "gearcam_base", "[]", "VALUE = 'base 0.1'\n"),
        ("gearcam-base", "0.2", "gearcam_base", "[]", "VALUE = 'base 0.2'\n"),
        ("gearcam-needs-base2", "0.1", "gearcam_needs_base2", '["gearcam-base>=0.2"]', "VALUE = 'on base 0.2'\n"),
        ("gearcam-lib", "0.1", "gearcam_lib", "[]", LIBRARY),
    ]
    for name, version, module, deps, body in packages:
        source = root / f"{name}-{version}"
        (source / module).mkdir(parents=True)
        (source / module / "__init__.py").write_text(body)
        (source / "pyproject.toml").write_text(
            textwrap.dedent(f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "{version}"
            dependencies = {deps}
            [tool.setuptools]
            packages = ["{module}"]
            """)
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(house),
             str(source)], check=True, capture_output=True,
        )  # fmt: skip
    assert len(list(house.glob("*.whl"))) == len(packages)
    return house


def _gears_copy(path: Path) -> Path:
    _need_gears_venv()
    shutil.copytree(GEARS_VENV, path, symlinks=True)
    return path / "bin" / "python"


class Stack:
    def __init__(self, tmp: Path, env: dict[str, str], requirepass: str | None = None) -> None:
        extra = ["--requirepass", requirepass] if requirepass else []
        self.backing = Backing(free_port(), tmp / "backing", extra=extra)
        (tmp / "backing").mkdir()
        self.backing.start()
        auth = f":{requirepass}@" if requirepass else ""
        self.runtime = Runtime(free_port(), f"redis://{auth}127.0.0.1:{self.backing.port}", env=env)
        self.runtime.start()
        self.password = requirepass

    def client(self, **kwargs: Any) -> redis.Redis:
        if self.password and "username" not in kwargs:
            kwargs["password"] = self.password
        return redis.Redis(port=self.runtime.port, protocol=2, socket_timeout=60, **kwargs)

    def stop(self) -> None:
        self.runtime.stop()
        self.backing.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make(env: dict[str, str] | None = None, requirepass: str | None = None, name: str = "s") -> Stack:
        folder = tmp_path / name
        folder.mkdir()
        stack = Stack(folder, env or {}, requirepass)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def _aborted(client: redis.Redis) -> set[bytes]:
    return {
        e["executionId"] for e in map(pairs, client.execute_command("RG.DUMPEXECUTIONS")) if e["status"] == b"aborted"
    }


def _execution(client: redis.Redis, execution_id: bytes) -> dict[str, Any]:
    (shard,) = client.execute_command("RG.GETEXECUTION", execution_id)
    return pairs(pairs(shard)["execution_plan"])


# -- RedisGears 1.2's script globals ---------------------------------------------------------------

REFERENCE_GLOBALS = (
    "redisgears rg asyncio copy io cProfile pstats execute call_next get_command override_reply atomic hashtag "
    "registerTE gearsCtx gearsFuture log setGearsSession getGearsSession registerGearsThread isInAtomicBlock "
    "configGet PyFlatExecution isAsyncAllow flat_error GearsBuilder GB createKeysOnlyReader shardReaderCallback "
    "gearsConfigGet GearsSession GearsFuture createFuture setFutureResults setFutureException runCoroutine "
    "profilerCreate profileStart profileStop profileGetInfo Future Thread Log ConfigGet GearsConfigGet"
).split()


def test_every_redisgears_global_is_there_without_an_import(rg: redis.Redis) -> None:
    names = repr(REFERENCE_GLOBALS)
    code = f"GB('ShardsIDReader').flatmap(lambda _: [n for n in {names} if n not in globals()]).run()"
    assert pyexecute(rg, code) == [[], []]


def test_a_demo_style_script_with_a_raw_gears_ctx_chain_and_execute_command(rg: redis.Redis) -> None:
    # The original demos' style: no imports, gearsCtx(...) chained, redisgears.executeCommand.
    code = textwrap.dedent("""\
        def keep(x):
            return int(x['value']['n']) % 2 == 0
        def publish(x):
            redisgears.executeCommand('XADD', 'demo:out', '*', 'n', x['value']['n'])
        def seen(x):
            return x['value']['n']
        gearsCtx('StreamReader').filter(keep).foreach(publish).map(seen).register(prefix='demo:cam')
        """)
    assert pyexecute(rg, code) == b"OK"
    for n in range(6):
        rg.xadd("demo:cam", {"n": str(n)})
    wait_for(lambda: rg.xlen("demo:out") == 3, what="even frames published")
    assert [f[b"n"] for _, f in rg.xrange("demo:out")] == [b"0", b"2", b"4"]
    # The raw context leaves results as the steps made them (no str(), no collect): still RedisGears' shape.
    assert pyexecute(rg, "gearsCtx('ShardsIDReader').map(lambda x: 7).run()") == [[7], []]


def test_scripts_run_in_a_process_apart_with_the_gears_virtualenv(rg: redis.Redis, runtime: Runtime) -> None:
    code = (
        "import os, sys, numpy\nGB('ShardsIDReader').map(lambda _: [os.getpid(), sys.prefix, numpy.__version__]).run()"
    )
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    pid, prefix, numpy_version = eval(result)
    assert runtime.proc is not None and pid != runtime.proc.pid
    assert pid in runtime.gears_workers()
    if GEARS_VENV.exists():
        assert Path(prefix).resolve() == GEARS_VENV.resolve()
        assert numpy_version.startswith("1.")  # the runtime itself runs numpy 2


def test_nothing_of_the_runtimes_environment_reaches_scripts(rg: redis.Redis) -> None:
    code = "import os\nGB('ShardsIDReader').map(lambda _: sorted(k for k in os.environ if 'REDIS' in k or k.startswith('GEARCAM'))).run()"
    assert pyexecute(rg, code) == [[b"[]"], []]


def test_workers_keep_a_frames_buffers_in_their_heap(rg: redis.Redis) -> None:
    """glibc's own thresholds map (and fault in) every 602 KB tensor a worker pickles; workers fix them
    (gearcam/allocator.py)."""
    need_glibc()
    in_worker = int(pyexecute(rg, FAULTS + "GB('ShardsIDReader').map(pickle_faults).run()")[0][0])
    python = GEARS_VENV / "bin" / "python" if (GEARS_VENV / "bin" / "python").exists() else Path(sys.executable)
    on_glibcs = faults_in_a_process(python=str(python))
    assert on_glibcs >= 1000
    assert in_worker * 10 <= on_glibcs, (in_worker, on_glibcs)


def test_the_runtimes_glibc_tunables_reach_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.perturb=0")
    assert worker_environment(sys.executable)["GLIBC_TUNABLES"] == "glibc.malloc.perturb=0"


# -- REQUIREMENTS -------------------------------------------------------------------------------------


def _offline_env(python: Path, wheelhouse: Path | None) -> dict[str, str]:
    env = {"GEARCAM_RUNTIME__GEARS_PYTHON": str(python), "GEARCAM_RUNTIME__GEARS_DOWNLOAD": "false"}
    if wheelhouse is not None:
        env["GEARCAM_RUNTIME__GEARS_WHEELHOUSE"] = str(wheelhouse)
    return env


def test_requirements_install_from_a_wheelhouse_into_the_gears_virtualenv(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    python = _gears_copy(tmp_path / "venv")
    client = make_stack(_offline_env(python, wheelhouse)).client()
    code = "import gearcam_tiny\nGB('ShardsIDReader').map(lambda _: gearcam_tiny.VALUE).run()"
    assert client.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-tiny") == [[b"tiny 0.1"], []]
    # Pinned against numpy 1.x: installs here (the Gears environment has numpy 1.26), keeps the environment's numpy.
    code = "import gearcam_old_numpy\nGB('ShardsIDReader').map(lambda _: gearcam_old_numpy.VALUE).run()"
    (version,), errors = client.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-old-numpy")
    assert errors == [] and version.startswith(b"1.26")
    # Needing numpy 2 would replace the environment's pin: refused with pip's reason.
    error = error_of(client, "RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-new-numpy")
    assert error.startswith("Could not satisfy requirements") and "numpy" in error
    assert subprocess.run([str(python), "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                          text=True, check=True).stdout.startswith("1.26")  # fmt: skip


def test_a_requirement_given_by_the_path_of_its_wheel_and_a_library_of_steps(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """RedisGears hands each requirement to pip as it is, so a wheel's path is one (rgsync's tests send
    `REQUIREMENTS /build/dist/rgsync-1.2.0-py3-none-any.whl`); refused here before as not a valid requirement.
    And the library's steps, closures over what it imported from `redisgears`, pickle by name as RedisGears'
    C functions do (refused before at register(): `cannot pickle '_thread._local' object`)."""
    client = make_stack(_offline_env(_gears_copy(tmp_path / "venv-a"), wheelhouse), name="a").client()
    wheel = str(wheelhouse / "gearcam_lib-0.1-py3-none-any.whl")
    code = "import gearcam_lib\nGB('CommandReader').foreach(gearcam_lib.counter('n')).register(trigger='count')"
    assert client.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", wheel) == b"OK"
    client.execute_command("RG.TRIGGER", "count")
    assert client.get("n{06S}") == b"1"
    (entry,) = client.execute_command("RG.PYDUMPREQS")
    fields = pairs(entry)
    assert (fields["Name"], fields["IsDownloaded"], fields["IsInstalled"]) == (wheel.encode(), b"yes", b"yes")
    assert fields["Wheels"] == [b"gearcam_lib-0.1-py3-none-any.whl"]
    missing = str(tmp_path / "gearcam_gone-0.1-py3-none-any.whl")
    error = error_of(client, "RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", missing)
    assert error.startswith("Could not satisfy requirements") and "gearcam_gone" in error

    # Exported and imported by the same name, onto a node without any source of wheels.
    metadata, data = client.execute_command("RG.PYEXPORTREQ", wheel)
    assert metadata[5] == b"yes" and metadata[7] == b"yes"
    target = make_stack(_offline_env(_gears_copy(tmp_path / "venv-b"), None), name="b").client()
    assert target.execute_command("RG.PYIMPORTREQ", *data) == b"OK"
    assert target.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", wheel) == b"OK"
    target.execute_command("RG.TRIGGER", "count")
    assert target.get("n{06S}") == b"1"


def test_an_environment_without_gearcams_constraints_is_pinned_at_what_it_has(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """The runtime's own environment (no .venv-gears) or a runtime.gears_python without gearcam-constraints.txt:
    a requirement that would replace an installed package is refused, so a script's `REQUIREMENTS redis==3.5.3`
    cannot downgrade what the runtime imports (RedisGears' own test suite does send that one)."""
    python = _gears_copy(tmp_path / "venv")
    (python.parent.parent / "gearcam-constraints.txt").unlink()
    client = make_stack(_offline_env(python, wheelhouse)).client()
    assert client.execute_command("RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-base==0.1") == b"OK"
    error = error_of(client, "RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-needs-base2")
    assert error.startswith("Could not satisfy requirements") and "gearcam-base" in error
    installed = subprocess.run([str(python), "-c", "import gearcam_base; print(gearcam_base.VALUE)"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert installed.strip() == "base 0.1"
    # What fits the environment as it is still installs.
    code = "import gearcam_tiny\nGB('ShardsIDReader').map(lambda _: gearcam_tiny.VALUE).run()"
    assert client.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-tiny") == [[b"tiny 0.1"], []]


def test_dumpreqs_export_and_import_to_a_node_without_network(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    source = make_stack(_offline_env(_gears_copy(tmp_path / "venv-a"), wheelhouse), name="a").client()
    assert source.execute_command("RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-tiny") == b"OK"
    (entry,) = source.execute_command("RG.PYDUMPREQS")
    fields = pairs(entry)
    assert [entry[i] for i in range(0, 12, 2)] == [b"GearReqVersion", b"Name", b"IsDownloaded", b"IsInstalled",
                                                    b"CompiledOs", b"Wheels"]  # fmt: skip
    assert fields["Name"] == b"gearcam-tiny" and fields["IsDownloaded"] == b"yes" and fields["IsInstalled"] == b"yes"
    assert fields["Wheels"] == [b"gearcam_tiny-0.1-py3-none-any.whl"]
    metadata, data = source.execute_command("RG.PYEXPORTREQ", "gearcam-tiny")
    assert metadata[5] == b"yes" and metadata[7] == b"yes"

    # A second node: no index, no wheelhouse. The exported data is all it gets.
    target = make_stack(_offline_env(_gears_copy(tmp_path / "venv-b"), None), name="b").client()
    code = "import gearcam_tiny\nGB('ShardsIDReader').map(lambda _: gearcam_tiny.VALUE).run()"
    assert "Could not satisfy requirements" in error_of(target, "RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-tiny")
    blob = b"".join(data)
    # RedisGears' serialization (what gears-cli keeps as data.bin): version 2, then the name with its NUL.
    assert blob[:8] == (2).to_bytes(8, "little") and blob[8:29] == (13).to_bytes(8, "little") + b"gearcam-tiny\0"
    assert error_of(target, "RG.PYIMPORTREQ", blob[: len(blob) // 2]) == (
        "Bad serialization format on reading wheel file data"
    )  # as RedisGears answers data that ends early
    assert target.execute_command("RG.PYIMPORTREQ", *data) == b"OK"
    (imported,) = target.execute_command("RG.PYDUMPREQS")  # listed before any session uses it, as RedisGears
    fields = pairs(imported)
    assert (fields["Name"], fields["IsDownloaded"], fields["IsInstalled"]) == (b"gearcam-tiny", b"yes", b"yes")
    assert fields["RefCount"] == 0
    assert target.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-tiny") == [[b"tiny 0.1"], []]


def _as_redisgears_exports(name: str, wheels: dict[str, bytes], version: int = 2) -> bytes:
    """An export as a RedisGears 1.2 node serializes it, laid out here by hand: 64-bit little-endian lengths,
    strings with their NUL; version 1 has no dictionary flag."""

    def text(value: str) -> bytes:
        return (len(value) + 1).to_bytes(8, "little") + value.encode() + b"\0"

    out = version.to_bytes(8, "little") + text(name) + text("linux-bionic-x64")
    out += (1).to_bytes(8, "little") if version >= 2 else b""
    out += len(wheels).to_bytes(8, "little")
    for file_name, data in wheels.items():
        out += text(file_name) + len(data).to_bytes(8, "little") + data
    return out


def test_a_requirement_a_redisgears_node_exported_imports_offline(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """gears-cli's export-requirements of a RedisGears node, imported into a runtime without network: the
    requirement and its dependency's wheels, RedisGears' format (version 1 too); refused wholes say why."""
    client = make_stack(_offline_env(_gears_copy(tmp_path / "venv"), None)).client()
    wheels = {name: (wheelhouse / name).read_bytes() for name in ("gearcam_needs_base2-0.1-py3-none-any.whl",
                                                                  "gearcam_base-0.2-py3-none-any.whl")}  # fmt: skip
    blob = _as_redisgears_exports("gearcam-needs-base2", wheels, version=1)
    assert client.execute_command("RG.PYIMPORTREQ", blob[:5_000], blob[5_000:]) == b"OK"
    code = "import gearcam_base\nGB('ShardsIDReader').map(lambda _: gearcam_base.VALUE).run()"
    assert client.execute_command("RG.PYEXECUTE", code, "REQUIREMENTS", "gearcam-needs-base2") == [[b"base 0.2"], []]
    assert error_of(client, "RG.PYIMPORTREQ", (3).to_bytes(8, "little")) == (
        "Requirement version is not compatible, upgrade to newer RedisGears."
    )
    assert error_of(client, "RG.PYIMPORTREQ", b"\x02") == "Bad serialization format on reading requirement version"
    # What gearcam exported before it spoke RedisGears' format (a header with a digest, then a tar) still imports.
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        tar.add(str(wheelhouse / "gearcam_tiny-0.1-py3-none-any.whl"), arcname="gearcam_tiny-0.1-py3-none-any.whl")
    body = packed.getvalue()
    header = json.dumps({"requirement": "gearcam-tiny", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    earlier = b"gearcam-requirement-v1\n" + header.encode() + b"\n" + body
    assert "incomplete or corrupt" in error_of(client, "RG.PYIMPORTREQ", earlier[:-1])
    assert client.execute_command("RG.PYIMPORTREQ", earlier) == b"OK"
    tiny = "import gearcam_tiny\nGB('ShardsIDReader').map(lambda _: gearcam_tiny.VALUE).run()"
    assert client.execute_command("RG.PYEXECUTE", tiny, "REQUIREMENTS", "gearcam-tiny") == [[b"tiny 0.1"], []]
    escaping = _as_redisgears_exports("gearcam-tiny", {"../evil.whl": b"x"})
    assert "plain file names ending in .whl" in error_of(client, "RG.PYIMPORTREQ", escaping)
    assert not list(tmp_path.rglob("evil.whl"))


def test_a_requirement_the_environment_had_is_exported_with_its_wheel(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """Registered while the environment had it, nothing was downloaded; RedisGears keeps every requirement's
    wheels, so RG.PYEXPORTREQ fetches the installed version's wheel (its test_requirements' export of
    `redis`). Without a source for it the error says where to put the wheel."""
    python = _gears_copy(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                    "gearcam-tiny"], check=True, capture_output=True)  # fmt: skip
    bare = make_stack(_offline_env(python, None), name="bare").client()
    assert bare.execute_command("RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-tiny") == b"OK"
    error = error_of(bare, "RG.PYEXPORTREQ", "gearcam-tiny")
    assert "came with the Gears environment (gearcam-tiny 0.1)" in error and "gears_wheelhouse" in error
    client = make_stack(_offline_env(python, wheelhouse), name="house").client()
    assert client.execute_command("RG.PYEXECUTE", "GB().register()", "REQUIREMENTS", "gearcam-tiny") == b"OK"
    metadata, data = client.execute_command("RG.PYEXPORTREQ", "gearcam-tiny")
    assert metadata[5] == b"yes" and metadata[7] == b"yes"
    assert b"gearcam_tiny-0.1-py3-none-any.whl" in b"".join(data)
    assert "Could not find requirement" in error_of(client, "RG.PYEXPORTREQ", "gearcam-unknown")


def test_an_export_holds_the_dependencies_wheels_so_a_node_without_network_imports_it(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """As RedisGears' (its `pip wheel` fetches the dependencies beside the requirement), an export holds the
    wheels of what the requirement needs, at the versions installed: gearcam-needs-base2 needs gearcam-base
    0.2, and the node it goes to has neither, nor any index or wheelhouse."""
    source = make_stack(_offline_env(_gears_copy(tmp_path / "venv-a"), wheelhouse), name="a").client()
    code = "import gearcam_needs_base2, gearcam_base\nGB('ShardsIDReader').map(lambda _: gearcam_base.VALUE).run()"
    requirement = ("REQUIREMENTS", "gearcam-needs-base2")
    assert source.execute_command("RG.PYEXECUTE", code, *requirement) == [[b"base 0.2"], []]
    metadata, data = source.execute_command("RG.PYEXPORTREQ", "gearcam-needs-base2")
    assert pairs(metadata)["Wheels"] == [b"gearcam_base-0.2-py3-none-any.whl",
                                         b"gearcam_needs_base2-0.1-py3-none-any.whl"]  # fmt: skip
    target = make_stack(_offline_env(_gears_copy(tmp_path / "venv-b"), None), name="b").client()
    assert target.execute_command("RG.PYIMPORTREQ", *data) == b"OK"
    assert target.execute_command("RG.PYEXECUTE", code, *requirement) == [[b"base 0.2"], []]


def test_a_forced_reinstall_gets_a_folder_of_its_own_once_its_script_loads(
    tmp_path: Path, wheelhouse: Path, make_stack: Any
) -> None:
    """RedisGears installs each copy of a requirement in a folder of its own: FORCE_REINSTALL_REQUIREMENTS shows
    a new Path in RG.PYDUMPREQS, and a script that then fails to load leaves the old one (test_requirements'
    ForceUpgrade and ForceUpgradeFailure)."""
    client = make_stack(_offline_env(_gears_copy(tmp_path / "venv"), wheelhouse)).client()
    code = "import gearcam_tiny\nGB('CommandReader').map(lambda _: gearcam_tiny.VALUE).register(trigger='t')"
    tiny = ("REQUIREMENTS", "gearcam-tiny")

    def path() -> bytes:
        (entry,) = client.execute_command("RG.PYDUMPREQS")
        folder: bytes = pairs(entry)["Path"]
        return folder

    assert client.execute_command("RG.PYEXECUTE", code, "ID", "s", *tiny) == b"OK"
    first = path()
    assert client.execute_command("RG.PYEXECUTE", code, "ID", "s", "UPGRADE", *tiny) == b"OK"
    assert path() == first
    broken = "import gearcam_not_there\n" + code
    assert "gearcam_not_there" in error_of(
        client, "RG.PYEXECUTE", broken, "ID", "s", "UPGRADE", "FORCE_REINSTALL_REQUIREMENTS", *tiny
    )
    assert path() == first
    forced = client.execute_command("RG.PYEXECUTE", code, "ID", "s", "UPGRADE", "FORCE_REINSTALL_REQUIREMENTS", *tiny)
    assert forced == b"OK"
    second = path()
    assert second != first and Path(second.decode()).is_dir() and not Path(first.decode()).exists()
    assert client.execute_command("RG.TRIGGER", "t") == [b"tiny 0.1"]


# -- the owner's rights ----------------------------------------------------------------------------------


def test_gears_code_runs_with_the_rights_of_the_user_who_sent_it(make_stack: Any) -> None:
    stack = make_stack(requirepass="runtime-secret")
    admin = stack.client()
    # +eval: RG.PYEXECUTE is for users who may run server-side scripts (docs/runtime.md, ACLs).
    admin.execute_command("ACL", "SETUSER", "limited", "on", ">limited-pw", "~limited:*", "+get", "+set",
                          "+acl|whoami", "+ping", "+eval")  # fmt: skip
    limited = stack.client(username="limited", password="limited-pw")
    code = textwrap.dedent("""\
        def probe(_):
            out = []
            for command in (('SET', 'limited:x', '1'), ('SET', 'other', '1'), ('CONFIG', 'GET', 'requirepass'),
                            ('ACL', 'SETUSER', 'limited', '+@all'), ('ACL', 'WHOAMI')):
                try:
                    out.append(str(execute(*command)))
                except Exception as e:
                    out.append(str(e).split(' ')[0])
            return out
        GB('ShardsIDReader').map(probe).run()
        """)
    (result,), errors = limited.execute_command("RG.PYEXECUTE", code)
    assert errors == []
    set_own, set_other, config, acl, whoami = eval(result)
    assert set_own == "True" or set_own == "OK"
    assert set_other == config == acl == "NOPERM"
    assert whoami == "gearcam-gears-limited"
    assert admin.get("limited:x") == b"1" and admin.get("other") is None
    # The limited user did not gain anything, and the runtime's password never reached the script.
    assert b"+@all" not in admin.execute_command("ACL", "GETUSER", "limited")[admin.execute_command(
        "ACL", "GETUSER", "limited").index(b"commands") + 1]  # fmt: skip
    leak = "import os\nGB('ShardsIDReader').map(lambda _: 'runtime-secret' in open('/proc/self/environ').read()).run()"
    assert limited.execute_command("RG.PYEXECUTE", leak) == [[b"False"], []]


def test_a_hooked_call_of_gears_code_keeps_its_owners_rights(make_stack: Any) -> None:
    # Gears code's execute() of a hooked command goes through the hook (as RedisGears hooks RM_Calls); past
    # the last hook it runs in the caller's worker, as the caller's owner: a hook registered by an
    # unrestricted user lends a limited one nothing.
    stack = make_stack(requirepass="runtime-secret")
    admin = stack.client()
    admin.execute_command("ACL", "SETUSER", "limited", "on", ">limited-pw", "~limited:*", "+get", "+set", "+ping",
                          "+eval")  # fmt: skip
    hook = textwrap.dedent("""\
        def seen(x):
            execute('INCR', 'hook-seen')
            return call_next(*x[1:])
        GB('CommandReader').map(seen).register(hook='set', mode='sync')
        """)
    assert admin.execute_command("RG.PYEXECUTE", hook) == b"OK"
    limited = stack.client(username="limited", password="limited-pw")
    code = textwrap.dedent("""\
        def probe(_):
            out = []
            for key in ('limited:y', 'other:y'):
                try:
                    out.append(str(execute('SET', key, '1')))
                except Exception as e:
                    out.append(str(e).split(' ')[0])
            return out
        GB('ShardsIDReader').map(probe).run()
        """)
    (result,), errors = limited.execute_command("RG.PYEXECUTE", code)
    assert errors == [] and eval(result) == ["OK", "NOPERM"]
    assert admin.get("limited:y") == b"1" and admin.get("other:y") is None
    assert admin.get("hook-seen") == b"2"  # both calls went through the admin's hook


# -- scripts that spin, block or eat memory ---------------------------------------------------------------


def test_an_abort_stops_a_spinning_step_and_the_server_keeps_answering(rg: redis.Redis) -> None:
    code = "def spin(x):\n    execute('SET', 'spinning', '1')\n    while True:\n        pass\nGB('ShardsIDReader').map(spin).run()"
    execution_id = pyexecute(rg, code, "UNBLOCKING")
    wait_for(lambda: rg.get("spinning") == b"1", what="the spinning step")
    assert rg.ping()
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: 'other').run()") == [[b"other"], []]
    assert rg.execute_command("RG.ABORTEXECUTION", execution_id) == b"OK"
    # As on RedisGears, the stopped step fails and the execution is done with that error.
    assert _execution(rg, execution_id)["status"] == b"done"
    assert len(_execution(rg, execution_id)["errors"]) == 1
    assert pyexecute(rg, "GB('ShardsIDReader').map(lambda x: 'after').run()") == [[b"after"], []]


def test_a_step_that_will_not_stop_gets_its_worker_replaced_and_registrations_resume(
    rg: redis.Redis, runtime: Runtime
) -> None:
    assert pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'hits')).register(prefix='ping:*')") == b"OK"
    rg.set("ping:1", "x")
    wait_for(lambda: rg.get("hits") == b"1", what="the registration's first run")
    before = runtime.gears_workers()
    code = "import time\ndef nap(x):\n    execute('SET', 'napping', '1')\n    time.sleep(3600)\nGB('ShardsIDReader').map(nap).run()"
    execution_id = pyexecute(rg, code, "UNBLOCKING")
    wait_for(lambda: rg.get("napping") == b"1", what="the sleeping step")
    # time.sleep cannot be interrupted from another thread: after the grace period the worker is replaced.
    assert rg.execute_command("RG.ABORTEXECUTION", execution_id) == b"OK"
    assert _execution(rg, execution_id)["status"] == b"aborted"
    wait_for(lambda: runtime.gears_workers() and runtime.gears_workers() != before, what="a new worker")
    rg.set("ping:2", "x")
    wait_for(lambda: rg.get("hits") == b"2", what="the registration after the replacement")


def test_eight_stuck_executions_do_not_stop_new_scripts(rg: redis.Redis) -> None:
    ids = [pyexecute(rg, "def spin(x):\n    while True:\n        pass\nGB('ShardsIDReader').map(spin).run()",
                     "UNBLOCKING") for _ in range(8)]  # fmt: skip
    try:
        started = time.monotonic()
        another = pyexecute(rg, "GB('ShardsIDReader').map(lambda x: 1).run()", "UNBLOCKING")
        assert time.monotonic() - started < 30
        assert another.startswith(b"0" * 40)
    finally:
        for execution_id in ids:
            rg.execute_command("RG.ABORTEXECUTION", execution_id)
    assert rg.execute_command("RG.GETRESULTSBLOCKING", another) == [[b"1"], []]


def test_a_memory_bomb_gets_its_worker_replaced_with_the_reason(make_stack: Any) -> None:
    stack = make_stack({"GEARCAM_RUNTIME__GEARS_MAX_MEMORY_MB": "300"})
    client = stack.client()
    bomb = "def bomb(x):\n    hog = []\n    while True:\n        hog.append(b'x' * (50 * 1024 * 1024))\nGB('ShardsIDReader').map(bomb).run()"
    results, errors = client.execute_command("RG.PYEXECUTE", bomb)
    assert results == []
    assert "gears_max_memory_mb" in errors[-1].decode() and "MiB" in errors[-1].decode()
    assert client.ping()
    assert client.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: 'ok').run()") == [[b"ok"], []]


def test_a_top_level_that_never_ends_is_cut_at_the_time_limit(make_stack: Any) -> None:
    stack = make_stack({"GEARCAM_RUNTIME__GEARS_MAX_EXECUTION_SECONDS": "2"})
    client = stack.client()
    error = error_of(client, "RG.PYEXECUTE", "while True:\n    pass\n")
    assert "aborted" in error
    assert client.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: 'ok').run()") == [[b"ok"], []]


def test_a_worker_killed_from_outside_is_replaced_with_its_sessions(rg: redis.Redis, runtime: Runtime) -> None:
    assert (
        pyexecute(rg, "GB().foreach(lambda r: execute('INCR', 'k-hits')).register(prefix='k:*')", "ID", "kill9")
        == b"OK"
    )
    rg.set("k:1", "x")
    wait_for(lambda: counters(rg)["numSuccess"] == 1, what="the first run, finished")
    killed = runtime.gears_workers()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # A killed process stays in /proc with its command line until it is scheduled to die: wait for a new pid,
    # or the next event could be sent to the dying worker (and be aborted with it, as documented).
    wait_for(lambda: (pids := runtime.gears_workers()) and not set(pids) & set(killed), what="the replacement worker")
    rg.set("k:2", "x")
    wait_for(lambda: rg.get("k-hits") == b"2", what="the registration in the new worker")
    assert counters(rg)["numSuccess"] == 2


def _first_event_sleeps(rg: redis.Redis, prefix: str, ran: str) -> None:
    """A KeysReader on `prefix`:* that lists the keys it ran for in `ran`; its run for `prefix`:1, triggered
    here, sleeps for good, so the registration's next executions wait behind it."""
    code = (
        "import time\n"
        "def step(r):\n"
        f"    execute('RPUSH', '{ran}', r['key'])\n"
        f"    if r['key'] == '{prefix}:1':\n"
        "        time.sleep(3600)\n"
        f"GB().foreach(step).register(prefix='{prefix}:*', eventTypes=['set'])"
    )
    assert pyexecute(rg, code, "ID", prefix) == b"OK"
    rg.set(f"{prefix}:1", "x")
    wait_for(lambda: rg.lrange(ran, 0, -1) == [f"{prefix}:1".encode()], what="the sleeping execution")


def test_executions_no_thread_had_taken_up_run_in_the_replacement_worker(rg: redis.Redis, runtime: Runtime) -> None:
    """A KeysReader's executions run one at a time: while the first sleeps, the next two wait in the worker.
    Killed from outside, the worker takes the sleeping one with it (aborted, with the reason); the two that
    had not started run in its replacement, so their events are not lost."""
    _first_event_sleeps(rg, "slow", "ran")
    rg.set("slow:2", "x")
    rg.set("slow:3", "x")
    wait_for(lambda: counters(rg)["numTriggered"] == 3, what="the two waiting executions")
    aborted_before = _aborted(rg)
    for pid in runtime.gears_workers():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: rg.lrange("ran", 0, -1) == [b"slow:1", b"slow:2", b"slow:3"], what="the waiting two, run again")
    stats = wait_for(lambda: (c := counters(rg))["numSuccess"] == 2 and c, what="their success, counted")
    assert stats["numAborted"] == 1
    (aborted,) = _aborted(rg) - aborted_before
    assert any(b"killed by signal SIGKILL" in error for error in _execution(rg, aborted)["errors"])
    assert "had not started when its worker ended" in runtime.log.read_text()


def test_an_execution_waiting_for_the_replacement_worker_can_be_aborted(rg: redis.Redis, runtime: Runtime) -> None:
    _first_event_sleeps(rg, "held", "held-ran")
    created_before = {e["executionId"] for e in map(pairs, rg.execute_command("RG.DUMPEXECUTIONS"))}
    rg.set("held:2", "x")
    waiting = wait_for(
        lambda: [
            e["executionId"]
            for e in map(pairs, rg.execute_command("RG.DUMPEXECUTIONS"))
            if e["executionId"] not in created_before
        ],  # fmt: skip
        what="the waiting execution",
    )
    (execution_id,) = waiting
    for pid in runtime.gears_workers():
        os.kill(pid, signal.SIGKILL)
    # The replacement starts a second after the death at the earliest: the execution waits for it meanwhile.
    wait_for(
        lambda: f"{execution_id.decode()} had not started" in runtime.output(), what="its wait for the replacement"
    )
    assert rg.execute_command("RG.ABORTEXECUTION", execution_id) == b"OK"
    assert _execution(rg, execution_id)["status"] == b"aborted"
    wait_for(lambda: runtime.gears_workers(), what="the replacement worker")
    rg.set("held:3", "x")
    wait_for(lambda: rg.lrange("held-ran", 0, -1) == [b"held:1", b"held:3"], what="the next event, in the replacement")

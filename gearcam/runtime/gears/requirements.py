"""REQUIREMENTS of RG.PYEXECUTE, installed into the Gears virtualenv the RedisGears way.

For each requirement, pip downloads its wheel (binary wheels preferred: an edge node must
not spend an hour compiling OpenCV) from the configured package index and/or a local
wheelhouse folder into `<venv>/gearcam-requirements/<name>/`, then installs it, with its
dependencies, into the Gears virtualenv. The environment's own pins (numpy 1.x, ...,
written by scripts/bootstrap to `<venv>/gearcam-constraints.txt`) are constraints of every
install, so a requirement can never replace them behind the scripts' back: one that
needs another numpy is refused with pip's reason. An environment without that file (the
runtime's own, when there is no .venv-gears, or one named by runtime.gears_python) is
pinned at what it has installed: a script's `REQUIREMENTS redis==3.5.3` must not
downgrade the redis-py the runtime itself imports. Sessions naming the same requirement
share it. RG.PYEXPORTREQ / RG.PYIMPORTREQ move the downloaded wheels to an offline node.

As on RedisGears, which hands each requirement to `pip wheel` as it is, a requirement may also
be what pip takes besides a name: a wheel or a source tree by path, a URL, a VCS URL
(`/build/dist/rgsync-1.2.0-py3-none-any.whl`, `git+https://...`; rgsync's own tests install it
that way). Such a *direct reference* is built into a wheel once (`pip wheel`), known by the
distribution that wheel holds, and installed from that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import re
import secrets
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from gearcam.cancel import wait_for
from gearcam.runtime.gears import requirement_format
from gearcam.runtime.gears.builder import GearsError

__all__ = ["GearsEnv", "NOT_SATISFIED", "is_direct_reference", "requirement_name"]

logger = logging.getLogger(__name__)

NOT_SATISFIED = "Could not satisfy requirements (look at redis log file for more information)"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXPORT_MAGIC = b"gearcam-requirement-v1\n"  # gearcam's own export format before 2026-12-07


_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_DIRECT_PREFIXES = ("/", "./", "../", "file:", "http://", "https://", *_VCS_PREFIXES)
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")


def is_direct_reference(requirement: str) -> bool:
    """A wheel, archive or source tree given by path or URL rather than by name (pip takes both)."""
    text = requirement.strip()
    return text.startswith(_DIRECT_PREFIXES) or (text.endswith(_ARCHIVES) and " " not in text and "=" not in text)


def _check_path(requirement: str) -> None:
    """A requirement given by a local path names a file or folder where the runtime runs (pip's own error for a
    missing one is a traceback)."""
    text = requirement.strip()
    path = text[len("file:") :] if text.startswith("file:") else text
    path = path[2:] if text.startswith("file://") else path
    if "://" in path or path.startswith(_VCS_PREFIXES):
        return
    if not Path(path).exists():
        raise GearsError(
            f"{NOT_SATISFIED}: {requirement!r} is no file or folder on the runtime's host (pip reads a requirement "
            "given by path there, from the runtime's working directory, with no shell to expand '~': give an "
            "absolute path)"
        )


def _wheel_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl")) if folder.is_dir() else []


def _wheel_distribution(filename: str) -> tuple[str, str]:
    """(name, version) from a wheel's file name; the format escapes '-' in both to '_' (PEP 427)."""
    name, version = filename.split("-")[:2]
    return name, version


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string ('opencv-python-headless<4.5' -> 'opencv-python-headless')."""
    match = None if is_direct_reference(requirement) else _NAME.match(requirement)
    if match is None:
        raise GearsError(f"{NOT_SATISFIED}: {requirement!r} is not a valid requirement")
    return match.group(1)


def _normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _folder(requirement: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", requirement.strip())[:100] or "_"


def _pip_reason(output: str) -> str:
    """pip's errors, with what caused a conflict (which requirement, which pin), without its advice."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    picked: list[str] = []
    in_cause = False
    for line in lines:
        if line.startswith("The conflict is caused by"):
            in_cause = True
        elif in_cause and line.startswith(("To fix this", "ERROR:")):
            in_cause = False
        if in_cause or (line.startswith("ERROR:") and "ResolutionImpossible" not in line):
            picked.append(line)
    return " | ".join((picked or lines)[-8:])[:1500]


@dataclass
class GearsEnv:
    """The Gears virtualenv and where its requirements come from."""

    python: str
    prefix: str
    purelib: str
    wheelhouse: str | None = None
    download: bool = True  # RedisGears' DownloadDeps: off means the wheelhouse only
    index_url: str | None = None
    idle_timeout: float = 30.0  # RedisGears' PythonInstallReqMaxIdleTime, in seconds
    # Requirements RG.PYIMPORTREQ installed: listed by RG.PYDUMPREQS even before a session uses them.
    imported: set[str] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Folders of forced reinstalls whose session has not loaded yet (see install, settle).
    _staged: dict[str, Path] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.prefix) / "gearcam-requirements"

    @property
    def constraints(self) -> Path:
        return Path(self.prefix) / "gearcam-constraints.txt"

    # -- what is there --------------------------------------------------------------------------

    def installed(self) -> dict[str, tuple[str, str]]:
        """(name, version) of each distribution in the environment, by normalized name (the first found)."""
        found: dict[str, tuple[str, str]] = {}
        for dist in metadata.distributions(path=[self.purelib]):
            name = dist.metadata["Name"]
            if name:
                found.setdefault(_normalized(name), (name, dist.version))
        return found

    def installed_version(self, name: str) -> str | None:
        entry = self.installed().get(_normalized(name))
        return entry[1] if entry is not None else None

    def satisfied(self, requirement: str) -> bool:
        if is_direct_reference(requirement):  # installed from the wheel built for it, at that wheel's version
            built = self.wheels(requirement)
            if not built:
                return False
            name, wheel_version = _wheel_distribution(built[0])
            return self.installed_version(name) == wheel_version
        version = self.installed_version(requirement_name(requirement))
        if version is None:
            return False
        try:
            return Requirement(requirement).specifier.contains(version, prereleases=True)
        except Exception:
            return False

    def wheel_folder(self, requirement: str) -> Path:
        """Where the requirement's wheels are: `<name>`, or after a forced reinstall `<name>_<10 hex>`, as
        RedisGears gives each install of a requirement a folder of its own (RG.PYDUMPREQS' Path)."""
        found = self._folders(requirement)
        return max(found, key=lambda p: p.stat().st_mtime) if found else self.folder / _folder(requirement)

    def _folders(self, requirement: str) -> list[Path]:
        """The requirement's wheel folders, but for one a forced reinstall made for a script not loaded yet."""
        if not self.folder.is_dir():
            return []
        own = re.compile(re.escape(_folder(requirement)) + r"(_[0-9a-f]{10})?")
        staged = self._staged.get(requirement)
        return [p for p in self.folder.iterdir() if own.fullmatch(p.name) and p != staged and p.is_dir()]

    def wheels(self, requirement: str) -> list[str]:
        return _wheel_names(self.wheel_folder(requirement))

    @staticmethod
    def _targets(requirement: str, folder: Path) -> list[str]:
        """What pip installs for a requirement: its name, or the wheel files built for a direct reference."""
        if not is_direct_reference(requirement):
            return [requirement]
        return [str(folder / name) for name in _wheel_names(folder)]

    def entry(self, requirement: str, refs: int) -> list[Any]:
        """RG.PYDUMPREQS' entry of one requirement (RedisGears 1.2's 18 fields)."""
        wheels = self.wheels(requirement)
        installed = self.satisfied(requirement)
        if not wheels and installed:  # the environment's own package (numpy): nothing to download
            wheels = [f"{requirement_name(requirement)}=={self.installed_version(requirement_name(requirement))}"]
        return [
            "GearReqVersion", requirement_format.VERSION, "Name", requirement,
            "IsDownloaded", "yes" if wheels else "no", "IsInstalled", "yes" if installed else "no",
            "CompiledOs", compiled_os(),
            "Wheels", wheels if wheels else "Requirement was not yet downloaded so wheels are not available",
            "Path", str(self.wheel_folder(requirement)), "RefCount", refs, "IsInReqDictionary", "yes",
        ]  # fmt: skip

    # -- installing ----------------------------------------------------------------------------

    def _sources(self, *find_links: Path) -> list[str]:
        args: list[str] = []
        for folder in find_links:
            args += ["--find-links", str(folder)]
        if self.wheelhouse:
            args += ["--find-links", self.wheelhouse]
        if not self.download:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        return args

    def pins(self) -> str:
        """Constraints holding every distribution installed in the environment at its version."""
        pins = sorted(f"{name}=={version}" for name, version in self.installed().values() if _valid_version(version))
        return "".join(f"{pin}\n" for pin in pins)

    async def _pip(self, *args: str) -> None:
        with contextlib.ExitStack() as stack:
            constraints = self.constraints
            if not constraints.is_file():
                pinned = stack.enter_context(tempfile.NamedTemporaryFile("w", prefix="gearcam-pins-", suffix=".txt"))
                pinned.write(self.pins())
                pinned.flush()
                constraints = Path(pinned.name)
            await self._run_pip(*args, "-c", str(constraints))

    async def _run_pip(self, *args: str) -> None:
        command = [self.python, "-m", "pip", *args, "--disable-pip-version-check", "--no-input", "--prefer-binary"]
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )  # fmt: skip
        assert proc.stdout is not None
        output: list[str] = []
        try:
            while True:
                line = await wait_for(proc.stdout.readline(), self.idle_timeout)
                if not line:
                    break
                output.append(line.decode("utf-8", "replace"))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise GearsError(
                f"{NOT_SATISFIED}: pip made no progress for {self.idle_timeout:g}s (PythonInstallReqMaxIdleTime); "
                "put the wheels in the Gears wheelhouse (runtime.gears_wheelhouse) on a node without network"
            ) from None
        if await proc.wait() != 0:
            text = "".join(output)
            logger.warning("pip %s failed:\n%s", args[0], text)
            raise GearsError(f"{NOT_SATISFIED}: pip: {_pip_reason(text)}")

    async def install(self, requirements: list[str], force: bool = False) -> bool:
        """Download and install what is missing (everything with `force`); True when something was installed."""
        for requirement in requirements:
            if is_direct_reference(requirement):
                _check_path(requirement)
                continue
            requirement_name(requirement)
            try:
                Requirement(requirement)
            except InvalidRequirement as exc:
                raise GearsError(f"{NOT_SATISFIED}: {requirement!r} is not a valid requirement ({exc})") from None
        async with self._lock:
            todo = [r for r in requirements if force or not self.satisfied(r)]
            if not todo:
                return False
            folders = []
            targets: list[str] = []
            try:
                for requirement in todo:
                    if force:  # a folder of its own, kept once the session loads (settle)
                        folder = self.folder / f"{_folder(requirement)}_{secrets.token_hex(5)}"
                        self._staged[requirement] = folder
                    else:
                        folder = self.wheel_folder(requirement)
                    if force or not self.wheels(requirement):
                        folder.mkdir(parents=True, exist_ok=True)
                        # A direct reference may be a source tree or a VCS URL: built into its wheel, as RedisGears
                        # runs `pip wheel` on every requirement.
                        fetch = "wheel" if is_direct_reference(requirement) else "download"
                        out = "-w" if fetch == "wheel" else "-d"
                        await self._pip(fetch, "--no-deps", out, str(folder), *self._sources(), requirement)
                    folders.append(folder)
                    targets += self._targets(requirement, folder)
                extra = ["--force-reinstall"] if force else []
                await self._pip("install", *extra, *self._sources(*folders), *targets)
            except BaseException:
                self._settle(todo, loaded=False)
                raise
            logger.info("installed Gears requirements into %s: %s", self.prefix, ", ".join(todo))
            return True

    async def settle(self, requirements: list[str], loaded: bool) -> None:
        """After the script that forced a reinstall loaded (`loaded`) or failed: keep the new folders and drop
        the old ones, or drop the new ones (RedisGears frees a failed session's requirement copies)."""
        async with self._lock:
            self._settle(requirements, loaded)

    def _settle(self, requirements: list[str], loaded: bool) -> None:
        for requirement in requirements:
            staged = self._staged.get(requirement)
            if staged is None:
                continue
            for folder in self._folders(requirement) if loaded else [staged]:
                shutil.rmtree(folder, ignore_errors=True)
            del self._staged[requirement]

    # -- moving requirements between nodes -------------------------------------------------------

    async def fetch_wheels(self, requirement: str) -> None:
        """Before an export: the wheels an offline node needs to install the requirement, at the versions
        installed here. RedisGears keeps them all from the start (`pip wheel` fetches the dependencies'
        wheels beside the requirement's); here pip installed the dependencies from the index or the
        wheelhouse, so their wheels are fetched now, once. A requirement the environment had already
        (nothing was downloaded when it was registered) gets its own wheel the same way."""
        folder = self.wheel_folder(requirement)
        if not self.wheels(requirement) and not is_direct_reference(requirement):
            name = requirement_name(requirement)
            version = self.installed_version(name)
            if version is None:
                return
            async with self._lock:
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    await self._download(folder, f"{name}=={version}")
                except GearsError as exc:
                    raise GearsError(
                        f"Could not find requirement {requirement}: it came with the Gears environment ({name} "
                        f"{version}) and its wheel could not be downloaded to export it ({exc}); put the wheel in "
                        "the Gears wheelhouse (runtime.gears_wheelhouse)"
                    ) from None
        present = {_normalized(_wheel_distribution(name)[0]) for name in self.wheels(requirement)}
        missing = [f"{name}=={version}" for name, version in self.dependencies(requirement)
                   if _normalized(name) not in present and _valid_version(version)]  # fmt: skip
        if not missing:
            return
        async with self._lock:
            try:
                await self._download(folder, *missing)
            except GearsError:
                for pin in missing:  # one by one: the export holds every wheel that can be had
                    try:
                        await self._download(folder, pin)
                    except GearsError as exc:
                        logger.warning(
                            "the export of requirement %s holds no wheel of its dependency %s (%s): a node without "
                            "network importing it needs that wheel in its Gears wheelhouse", requirement, pin, exc
                        )  # fmt: skip

    async def _download(self, folder: Path, *pins: str) -> None:
        """The wheels of exactly these distributions into `folder`, from the wheelhouse or the index."""
        await self._pip("download", "--no-deps", "-d", str(folder), *self._sources(), *pins)

    def dependencies(self, requirement: str) -> list[tuple[str, str]]:
        """(name, version) of every installed distribution the requirement needs, through its dependencies'
        own (and the extras it names), as its metadata says. Markers are read for this Python."""
        dists = {_normalized(d.metadata["Name"]): d for d in metadata.distributions(path=[self.purelib])
                 if d.metadata["Name"]}  # fmt: skip
        if is_direct_reference(requirement):
            built = self.wheels(requirement)
            if not built:
                return []
            start: tuple[str, frozenset[str]] = (_wheel_distribution(built[0])[0], frozenset())
        else:
            try:
                parsed = Requirement(requirement)
            except InvalidRequirement:
                return []
            start = (parsed.name, frozenset(parsed.extras))
        found: dict[str, tuple[str, str]] = {}
        seen: set[tuple[str, frozenset[str]]] = set()
        todo = [start]
        while todo:
            name, extras = todo.pop()
            if (_normalized(name), extras) in seen:
                continue
            seen.add((_normalized(name), extras))
            dist = dists.get(_normalized(name))
            for text in (dist.requires or []) if dist is not None else []:
                try:
                    needed = Requirement(text)
                except InvalidRequirement:
                    continue
                marker = needed.marker
                if marker is not None and not any(marker.evaluate({"extra": e}) for e in (extras or {""})):
                    continue
                key = _normalized(needed.name)
                if key in dists and key != _normalized(start[0]):
                    found[key] = (dists[key].metadata["Name"], dists[key].version)
                    todo.append((needed.name, frozenset(needed.extras)))
        return sorted(found.values())

    def export(self, requirement: str) -> list[bytes]:
        """RG.PYEXPORTREQ's data: the requirement and its wheels as RedisGears serializes them, in its chunks
        (gears/requirement_format.py): gears-cli saves it, and RedisGears or another runtime imports it."""
        folder = self.wheel_folder(requirement)
        wheels = [(name, (folder / name).read_bytes()) for name in self.wheels(requirement)]
        blob = requirement_format.serialize(requirement_format.Exported(requirement, compiled_os(), True, wheels))
        step = requirement_format.CHUNK_BYTES
        return [blob[i : i + step] for i in range(0, len(blob), step)]

    async def import_(self, chunks: list[bytes]) -> str:
        """RG.PYIMPORTREQ: read the data whole (RedisGears' serialization, or what gearcam exported before
        2026-12-07), write the wheels, install them without any index."""
        blob = b"".join(chunks)
        if blob.startswith(_EXPORT_MAGIC):
            requirement, wheels = _earlier_export(blob)
        else:
            try:
                exported = requirement_format.deserialize(blob)
            except requirement_format.RequirementFormatError as exc:
                raise GearsError(str(exc)) from None
            requirement, wheels = exported.name, exported.wheels
        if not requirement or any(not _plain_wheel_name(name) for name, _ in wheels):
            raise GearsError(
                "On RedisGearsPy_ImportRequirementInternal, failed deserialize requirements: a requirement needs a "
                "name, and its wheels plain file names ending in .whl"
            )
        folder = self.wheel_folder(requirement)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in wheels:
            (folder / name).write_bytes(data)
        async with self._lock:
            saved, self.download, wheelhouse = self.download, False, self.wheelhouse
            try:
                await self._pip("install", *self._sources(folder), *self._targets(requirement, folder))
            except GearsError as exc:
                raise GearsError(
                    "On RedisGearsPy_ImportRequirementInternal, Failed install requirement on shard, check shard "
                    f"log for more info. ({exc})"
                ) from None
            finally:
                self.download, self.wheelhouse = saved, wheelhouse
        self.imported.add(requirement)
        return requirement


def compiled_os() -> str:
    """RG.PYDUMPREQS' `CompiledOs`: what the wheels were fetched for (RedisGears names its build, linux-x64)."""
    return f"{platform.system().lower()}-{platform.machine()}"


def _plain_wheel_name(name: str) -> bool:
    """A wheel's file name, written into the requirement's folder: no folders, no way out of it."""
    return name.endswith(".whl") and "/" not in name and "\\" not in name and not name.startswith(".")


def _earlier_export(blob: bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """The requirement and wheels of gearcam's own export format before 2026-12-07 (a header with the size
    and sha256, then a tar of the wheels), still imported; refused whole if incomplete or corrupt."""
    head, _, data = blob[len(_EXPORT_MAGIC) :].partition(b"\n")
    try:
        meta = json.loads(head)
        requirement = str(meta["requirement"])
        complete = len(data) == int(meta["size"]) and hashlib.sha256(data).hexdigest() == meta["sha256"]
    except (ValueError, KeyError, TypeError):
        complete, requirement = False, ""
    if not complete:
        raise GearsError(
            "On RedisGearsPy_ImportRequirementInternal, failed deserialize requirements: the data is incomplete "
            "or corrupt; pass every chunk RG.PYEXPORTREQ gave, in order"
        )
    wheels = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            source = tar.extractfile(member) if member.isfile() else None
            if source is None:
                raise GearsError("On RedisGearsPy_ImportRequirementInternal, failed deserialize requirements")
            wheels.append((member.name, source.read()))
    return requirement, wheels


def _valid_version(version: str) -> bool:
    """pip refuses a constraints file with a version PEP 440 does not parse; such a distribution is left out."""
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


async def describe_python(python: str) -> tuple[str, str]:
    """(sys.prefix, site-packages) of another Python."""
    proc = await asyncio.create_subprocess_exec(
        python, "-I", "-c", "import sys, sysconfig; print(sys.prefix); print(sysconfig.get_paths()['purelib'])",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise GearsError(f"cannot run the Gears Python {python}: {err.decode(errors='replace').strip()}")
    prefix, purelib = out.decode().split("\n")[:2]
    return prefix, purelib

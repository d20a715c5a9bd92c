"""Which wheels pip on an image accepts, and the record of the wheels each image's pins resolve to.

An image built without a compiler (the app image is `debian:trixie-slim`) must find a binary wheel
for every package it installs, on its own Python and glibc, for each architecture; a pin without
one fails the build only when someone builds that architecture (the Jetson's arm64 is rarely built).
So the wheels the pins resolve to are recorded per target (`docker/image-wheels.txt`, written by
`scripts/record-image-wheels` from what pip downloads from PyPI), and the tests check the record
against the pins and against the tags below, without network access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from gearcam.config import PROJECT_ROOT
from gearcam.errors import ConfigError

__all__ = [
    "TARGETS",
    "WHEEL_RECORD",
    "RecordedWheel",
    "WheelTarget",
    "accepted_tags",
    "pinned_versions",
    "read_wheel_record",
]

WHEEL_RECORD = PROJECT_ROOT / "docker" / "image-wheels.txt"
ARCHES = ("aarch64", "x86_64")


@dataclass(frozen=True)
class WheelTarget:
    """A virtualenv an image builds: the requirements it installs, with which Python, on which glibc."""

    name: str
    requirements: str  # relative to the project root
    python: tuple[int, int]
    glibc: tuple[int, int]
    exclude: tuple[str, ...] = ()  # packages the image takes from Debian instead


# Dockerfile.app: the runtime's venv on Debian trixie's Python 3.13 (glibc 2.41), without the PyPI
# OpenCV (Debian's python3-opencv has GStreamer); the Gears venv on Python 3.11, because the Gears
# pins (numpy 1.26) have no wheel for 3.13.
TARGETS = (
    WheelTarget("app", "requirements.txt", (3, 13), (2, 41), exclude=("opencv-python-headless",)),
    WheelTarget("app-gears", "requirements-gears.txt", (3, 11), (2, 41)),
)


@dataclass(frozen=True)
class RecordedWheel:
    """One line of the record: the wheel pip chose for a target and architecture, and its sha256."""

    target: str
    arch: str
    filename: str
    sha256: str

    @property
    def name(self) -> str:
        return str(parse_wheel_filename(self.filename)[0])

    @property
    def version(self) -> str:
        return str(parse_wheel_filename(self.filename)[1])

    @property
    def tags(self) -> frozenset[Tag]:
        return parse_wheel_filename(self.filename)[3]


def accepted_tags(python: tuple[int, int], arch: str, glibc: tuple[int, int]) -> set[Tag]:
    """The tags pip accepts for CPython `python` on Linux `arch` with `glibc` (the target's, not this machine's)."""
    platforms = [f"manylinux_{glibc[0]}_{minor}_{arch}" for minor in range(glibc[1], 4, -1)]
    platforms += [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        platforms += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    platforms.append(f"linux_{arch}")
    abi = f"cp{python[0]}{python[1]}" + ("m" if python < (3, 8) else "")
    tags = set(cpython_tags(python, abis=[abi, "abi3", "none"], platforms=platforms))
    pure = {f"py{python[0]}", f"py{python[0]}{python[1]}"}
    return tags | {Tag(interpreter, "none", "any") for interpreter in pure}


def pinned_versions(target: WheelTarget, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """{package: version} of the `==` pins the target installs (its exclusions left out)."""
    pins: dict[str, str] = {}
    excluded = {canonicalize_name(name) for name in target.exclude}
    for line in (root / target.requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if name not in excluded and versions:
            pins[name] = versions[0]
    return pins


def read_wheel_record(path: Path = WHEEL_RECORD) -> list[RecordedWheel]:
    """The record's lines (`target arch wheel-filename sha256`), comments skipped."""
    wheels = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not re.fullmatch(r"[0-9a-f]{64}", fields[3]):
            raise ConfigError(
                f"{path.name}:{number}: expected `target arch wheel sha256`, got {line!r}; "
                "rewrite it with scripts/record-image-wheels"
            )
        wheels.append(RecordedWheel(*fields))
    return wheels

"""REQUIREMENTS of RG.PYEXECUTE, checked against the runtime's own Python environment.

RedisGears downloads and installs requirements into a virtualenv; the runtime never
uses the network: every requirement must already be installed where the runtime
runs, and a missing one is refused with its name and the pip command to run.
"""

from __future__ import annotations

import re
from importlib import metadata

from gearcam.runtime.gears.builder import GearsError

__all__ = ["check_requirements", "installed_version"]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _satisfies(requirement: str, version: str) -> bool:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # without packaging only the name is checked
        return True
    try:
        spec = Requirement(requirement).specifier
    except InvalidRequirement:
        raise GearsError(f"Could not satisfy requirements: {requirement!r} is not a valid requirement") from None
    return spec.contains(version, prereleases=True)


def check_requirements(requirements: list[str]) -> None:
    """Raise GearsError naming the first requirement this environment does not satisfy."""
    for requirement in requirements:
        match = _NAME.match(requirement)
        if match is None:
            raise GearsError(f"Could not satisfy requirements: {requirement!r} is not a valid requirement")
        name = match.group(1)
        version = installed_version(name)
        if version is None:
            raise GearsError(
                f"Could not satisfy requirements: package '{name}' (from {requirement!r}) is not installed in the "
                f"gearcam runtime's Python environment, and the runtime installs nothing (no network); "
                f"run `pip install '{requirement}'` in the runtime's environment and retry"
            )
        if not _satisfies(requirement, version):
            raise GearsError(
                f"Could not satisfy requirements: package '{name}' {version} is installed but {requirement!r} "
                f"was asked; install a matching version in the runtime's environment and retry"
            )

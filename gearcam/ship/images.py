"""Which images exist per architecture, their names, and the `docker buildx` / `docker push` lines.

Image names carry the architecture in the tag (`gearcam/app:0.1.0-arm64v8`), so an arm64 and an
x64 build can live side by side on one workstation and in one registry without manifest lists.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from gearcam.config import PROJECT_ROOT, ShipSettings
from gearcam.errors import CallerError, ConfigError

__all__ = ["PLATFORMS", "STOCK_REDIS", "ImageSpec", "build_commands", "image_ref", "image_specs", "push_commands"]

# `invoke build --arch` names (RedisAI's and RedisGears' ARCH names) → Docker platforms.
PLATFORMS = {"arm64v8": "linux/arm64", "x64": "linux/amd64"}
# The backing Redis of the `runtime` overlay (stock, multi-arch, from Docker Hub).
STOCK_REDIS = "redis:7.2.5"
# The Ubuntu the x64 module image builds on (RedisGears 1.2.12 and RedisAI 1.2.7 support focal).
X64_OSNICK = "focal"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its short name (`app`, `redis-jetson`, `redis`) and the Dockerfile that builds it."""

    name: str
    dockerfile: str
    module_args: bool  # whether it takes the Redis/RedisAI/RedisGears version build args


_APP = ImageSpec("app", "docker/Dockerfile.app", module_args=False)
_SPECS = {
    "arm64v8": (ImageSpec("redis-jetson", "docker/Dockerfile.jetson", module_args=True), _APP),
    "x64": (ImageSpec("redis", "docker/Dockerfile.redis", module_args=True), _APP),
}


def _check_arch(arch: str) -> None:
    if arch not in PLATFORMS:
        raise CallerError(f"unknown --arch {arch!r}; choose one of: {', '.join(PLATFORMS)}")


def image_specs(arch: str) -> tuple[ImageSpec, ...]:
    """The images an architecture needs: the Redis with the modules, and the gearcam app."""
    _check_arch(arch)
    return _SPECS[arch]


def image_ref(ship: ShipSettings, name: str, arch: str) -> str:
    """`[registry/]gearcam/<name>:<tag>-<arch>`."""
    _check_arch(arch)
    prefix = f"{ship.registry.strip('/')}/" if ship.registry.strip("/") else ""
    return f"{prefix}gearcam/{name}:{ship.tag}-{arch}"


def build_args(ship: ShipSettings, spec: ImageSpec, arch: str) -> list[tuple[str, str]]:
    """The `--build-arg`s of one image (the module versions; the L4T release for the Jetson image)."""
    if not spec.module_args:
        return []
    args = [
        ("REDIS_VER", ship.redis_version),
        ("AI_VER", ship.ai_version),
        ("GEARS_VER", ship.gears_version),
        ("ARCH", arch),
        ("OSNICK", ship.osnick if arch == "arm64v8" else X64_OSNICK),
    ]
    if arch == "arm64v8":
        args.append(("L4T_VER", ship.l4t_version))
    return args


def build_commands(ship: ShipSettings, arch: str, push: bool = False, root: Path = PROJECT_ROOT) -> list[str]:
    """`docker buildx build` for every image of `arch`: loaded into the local Docker, or pushed with `push`."""
    if push and not ship.registry.strip("/"):
        raise ConfigError(_NO_REGISTRY)
    commands = []
    for spec in image_specs(arch):
        parts = ["docker", "buildx", "build", "--platform", PLATFORMS[arch], "--file", str(root / spec.dockerfile)]
        for key, value in build_args(ship, spec, arch):
            parts += ["--build-arg", f"{key}={value}"]
        parts += ["--tag", image_ref(ship, spec.name, arch), "--push" if push else "--load", str(root)]
        commands.append(shlex.join(parts))
    return commands


def push_commands(ship: ShipSettings, arch: str) -> list[str]:
    """`docker push` for every image of `arch` (built before with `invoke build`)."""
    if not ship.registry.strip("/"):
        raise ConfigError(_NO_REGISTRY)
    return [shlex.join(["docker", "push", image_ref(ship, spec.name, arch)]) for spec in image_specs(arch)]


_NO_REGISTRY = (
    "no registry configured: set gearcam.ship.registry in invoke.yaml (e.g. registry.local:5000) "
    "or GEARCAM_SHIP__REGISTRY=...; or ship over SSH instead (a host with `ship: ssh`)"
)

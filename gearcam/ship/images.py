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

__all__ = [
    "AI_BACKENDS",
    "PLATFORMS",
    "Artifacts",
    "STOCK_REDIS",
    "ImageSpec",
    "build_commands",
    "image_ref",
    "image_specs",
    "preflight_commands",
    "push_commands",
    "versions",
]

# `invoke build --arch` names (RedisAI's and RedisGears' ARCH names) → Docker platforms.
PLATFORMS = {"arm64v8": "linux/arm64", "x64": "linux/amd64"}
# The backing Redis of the `runtime` overlay (stock, multi-arch, from Docker Hub).
STOCK_REDIS = "redis:7.2.5"
# The Ubuntu the x64 module image builds on (RedisGears 1.2.12 and RedisAI 1.2.7 support focal).
X64_OSNICK = "focal"
# What each RedisAI release's get_deps.sh fetches for the image's architecture (read at each tag).
AI_BACKENDS = {
    ("1.2.4", "arm64v8"): "TF 2.4.0 (Jetson GPU build), TFLite 2.0.0",
    ("1.2.7", "x64"): "TF 2.8.0, TFLite 2.0.0, ONNX Runtime 1.11.1",
}


@dataclass(frozen=True)
class ImageSpec:
    """One image: its short name (`app`, `redis-jetson`, `redis`) and the Dockerfile that builds it."""

    name: str
    dockerfile: str
    module_args: bool  # whether it takes the Redis/RedisAI/RedisGears version build args
    lock: str | None = None  # its external artifacts (docker/fetch-artifacts.sh checks them first)


_APP = ImageSpec("app", "docker/Dockerfile.app", module_args=False)
_SPECS = {
    "arm64v8": (
        ImageSpec("redis-jetson", "docker/Dockerfile.jetson", module_args=True, lock="docker/artifacts-jetson.lock"),
        _APP,
    ),
    "x64": (ImageSpec("redis", "docker/Dockerfile.redis", module_args=True), _APP),
}


def _check_arch(arch: str) -> None:
    if arch not in PLATFORMS:
        raise CallerError(f"unknown --arch {arch!r}; choose one of: {', '.join(PLATFORMS)}")


def image_specs(arch: str, only: str = "") -> tuple[ImageSpec, ...]:
    """The images an architecture needs: the Redis with the modules, and the gearcam app; or `only` one of them.

    `only="app"` is plan B on a node where the module image cannot be built (RedisAI's archives gone):
    the app image alone runs the `runtime` overlay in front of a stock Redis.
    """
    _check_arch(arch)
    if not only:
        return _SPECS[arch]
    chosen = tuple(spec for spec in _SPECS[arch] if spec.name == only)
    if not chosen:
        names = ", ".join(spec.name for spec in _SPECS[arch])
        raise CallerError(f"--only {only!r} is not an image of {arch}; choose one of: {names}")
    return chosen


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
        ("AI_VER", ship.jetson_ai_version if arch == "arm64v8" else ship.ai_version),
        ("GEARS_VER", ship.gears_version),
        ("ARCH", arch),
        ("OSNICK", ship.osnick if arch == "arm64v8" else X64_OSNICK),
    ]
    if arch == "arm64v8":
        args.append(("L4T_VER", ship.l4t_version))
    return args


def versions(ship: ShipSettings, arch: str, only: str = "") -> str:
    """One line naming what the module image of `arch` is built from (printed by `invoke build`)."""
    if not any(spec.module_args for spec in image_specs(arch, only)):
        return f"{arch}: the app image only (runtime overlay: stock {STOCK_REDIS} behind the gearcam runtime, CPU)"
    ai = ship.jetson_ai_version if arch == "arm64v8" else ship.ai_version
    backends = AI_BACKENDS.get((ai, arch), "backends: see that release's get_deps.sh")
    base = f"L4T {ship.l4t_version} ({ship.osnick})" if arch == "arm64v8" else f"Ubuntu {X64_OSNICK}"
    return f"{arch}: Redis {ship.redis_version}, RedisAI {ai} ({backends}), RedisGears {ship.gears_version}, {base}"


@dataclass(frozen=True)
class Artifacts:
    """Where the module image's external files come from, when not upstream (docker/fetch-artifacts.sh)."""

    folder: Path | None = None  # a local folder: docker buildx --build-context artifacts=DIR
    mirror: str = ""  # an internal mirror's base URL: --build-arg ARTIFACTS_URL=...


def preflight_commands(
    arch: str, artifacts: Artifacts = Artifacts(), root: Path = PROJECT_ROOT, only: str = ""
) -> list[str]:
    """Check every external artifact of `arch`'s images on this machine, before `docker buildx build` starts."""
    commands = []
    for spec in image_specs(arch, only):
        if spec.lock is None:
            continue
        env = []
        if artifacts.folder is not None:
            env.append(f"ARTIFACTS_DIR={artifacts.folder}")
        if artifacts.mirror:
            env.append(f"ARTIFACTS_URL={artifacts.mirror}")
        script = [str(root / "docker" / "fetch-artifacts.sh"), "check", str(root / spec.lock)]
        commands.append(shlex.join(["env", *env, *script]))
    return commands


def build_commands(
    ship: ShipSettings,
    arch: str,
    push: bool = False,
    root: Path = PROJECT_ROOT,
    artifacts: Artifacts = Artifacts(),
    only: str = "",
) -> list[str]:
    """`docker buildx build` for every image of `arch` (or `only` one): loaded into the local Docker, or pushed."""
    if push and not ship.registry.strip("/"):
        raise ConfigError(_NO_REGISTRY)
    if artifacts.folder is not None and not artifacts.folder.is_dir():
        raise CallerError(f"--artifacts {artifacts.folder} is not a folder; give the folder holding the lock's files")
    commands = []
    for spec in image_specs(arch, only):
        parts = ["docker", "buildx", "build", "--platform", PLATFORMS[arch], "--file", str(root / spec.dockerfile)]
        for key, value in build_args(ship, spec, arch):
            parts += ["--build-arg", f"{key}={value}"]
        if spec.lock is not None and artifacts.mirror:
            parts += ["--build-arg", f"ARTIFACTS_URL={artifacts.mirror}"]
        if spec.lock is not None and artifacts.folder is not None:
            parts += ["--build-context", f"artifacts={artifacts.folder.resolve()}"]
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

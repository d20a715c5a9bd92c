"""The kubectl/ssh/docker steps of `invoke deploy`, `undeploy` and `logs` for one host.

Deploy, in order: label the node (the DaemonSet's nodeSelector), make the images available on it
(`docker save | ssh NODE docker load` into the Docker that k3s runs with `--docker`, or `docker
push` to a registry it pulls from), delete the previous loader Job (a Job's pod template cannot be
changed in place), `kubectl apply -k` the generated per-host kustomization, wait for the DaemonSet
rollout and for the loader Job, then ask the node's Redis for `RG.DUMPREGISTRATIONS`.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from gearcam.config import PROJECT_ROOT, HostSettings, Settings
from gearcam.errors import CallerError, ConfigError
from gearcam.ship.images import PLATFORMS, STOCK_REDIS, ImageSpec, image_ref, image_specs
from gearcam.ship.steps import Step
from gearcam.ship.workdir import PASSWORD_FILE, WEB_TOKEN_FILE

__all__ = [
    "DAEMONSET",
    "DEVICE_LABEL",
    "LOADER_JOB",
    "SECRET",
    "WEB_SECRET",
    "deploy_kustomization",
    "deploy_steps",
    "find_host",
    "logs_commands",
    "overlay_for",
    "undeploy_steps",
]

DEVICE_LABEL = "gearcam.io/device"  # value: the overlay name; the DaemonSet and the Job select on it
DAEMONSET = "gearcam"
LOADER_JOB = "gearcam-loader"
SECRET = "gearcam-redis"
WEB_SECRET = "gearcam-web"  # key token: the pages' login (GEARCAM_WEB__TOKEN)
OVERLAY_ARCH = {"jetson-nano": "arm64v8", "x64": "x64", "runtime": None}
DEPLOY_DIR = PROJECT_ROOT / ".gearcam" / "deploy"


def find_host(settings: Settings, name: str) -> HostSettings:
    """The host called `name` in gearcam.ship.hosts, or an error listing the ones that exist."""
    hosts = settings.ship.hosts
    if name not in hosts:
        known = ", ".join(sorted(hosts)) or "none"
        raise ConfigError(
            f"unknown host {name!r} (configured: {known}); add it under gearcam.ship.hosts in invoke.yaml"
        )
    return hosts[name]


def overlay_for(host: HostSettings, overlay: str | None = None) -> str:
    """The overlay to apply: the flag, else the host's, else the one for its architecture; checked against it."""
    chosen = overlay or host.overlay or ("jetson-nano" if host.arch == "arm64v8" else "x64")
    if chosen not in OVERLAY_ARCH:
        raise CallerError(f"unknown overlay {chosen!r}; choose one of: {', '.join(OVERLAY_ARCH)}")
    needs = OVERLAY_ARCH[chosen]
    if needs is not None and needs != host.arch:
        raise CallerError(
            f"overlay {chosen!r} runs {needs} images but the host is {host.arch}; "
            f"use --overlay runtime, or fix the host's arch in invoke.yaml"
        )
    return chosen


def _images(host: HostSettings, overlay: str) -> tuple[ImageSpec, ...]:
    return image_specs(host.arch, only="app" if overlay == "runtime" else "")


def _kubectl(host: HostSettings, *args: str, namespace: str | None = None) -> str:
    parts = ["kubectl"]
    if host.context:
        parts += ["--context", host.context]
    if namespace:
        parts += ["-n", namespace]
    return shlex.join([*parts, *args])


def deploy_kustomization(settings: Settings, host: HostSettings, overlay: str, work_dir: Path) -> dict[str, Any]:
    """The kustomization `deploy` applies: the overlay, this host's image names, and the password Secret."""
    ship = settings.ship
    images = []
    for spec in _images(host, overlay):
        ref = image_ref(ship, spec.name, host.arch)
        name, tag = ref.rsplit(":", 1)
        images.append({"name": f"gearcam/{spec.name}", "newName": name, "newTag": tag})
    overlay_dir = PROJECT_ROOT / "deploy" / "overlays" / overlay
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": ship.namespace,
        "resources": [os.path.relpath(overlay_dir, work_dir)],
        "images": images,
        "secretGenerator": [
            {
                "name": SECRET,
                "files": [f"password={PASSWORD_FILE}"],
                "options": {"disableNameSuffixHash": True},
            },
            {
                "name": WEB_SECRET,
                "files": [f"token={WEB_TOKEN_FILE}"],
                "options": {"disableNameSuffixHash": True},
            },
        ],
    }


def _ship_steps(settings: Settings, host: HostSettings, overlay: str) -> list[Step]:
    ship = settings.ship
    refs = [image_ref(ship, spec.name, host.arch) for spec in _images(host, overlay)]
    build = f"`invoke build --arch {host.arch}` first"
    if host.ship == "registry":
        if not ship.registry.strip("/"):
            raise ConfigError(
                f"host {host.ssh} ships by registry but gearcam.ship.registry is empty; set it, or `ship: ssh`"
            )
        return [
            Step(
                f"push {ref}",
                shlex.join(["docker", "push", ref]),
                f"was it built ({build})? are you logged in to {ship.registry} (`docker login`)? "
                "the node must be able to pull from it too",
            )
            for ref in refs
        ]
    steps = []
    if overlay == "runtime":
        steps.append(
            Step(
                f"pull {STOCK_REDIS}",
                shlex.join(["docker", "pull", "--platform", PLATFORMS[host.arch], STOCK_REDIS]),
                "this machine must reach Docker Hub (or pull the image on the node yourself)",
            )
        )
        refs.append(STOCK_REDIS)
    for ref in refs:
        steps.append(
            Step(
                f"copy {ref} to {host.ssh}",
                f"set -o pipefail && docker save {shlex.quote(ref)} | ssh {shlex.quote(host.ssh)} docker load",
                f"was it built ({build})? does `ssh {host.ssh} docker info` work without a password prompt "
                "(the user in the docker group)?",
            )
        )
    return steps


def deploy_steps(
    settings: Settings, host_name: str, overlay: str | None = None, work_dir: Path | None = None
) -> list[Step]:
    """Every step of `invoke deploy --host NAME`, in order (the deploy dir is written by the caller)."""
    host = find_host(settings, host_name)
    chosen = overlay_for(host, overlay)
    ns = settings.ship.namespace
    timeout = f"--timeout={settings.ship.timeout}s"
    work_dir = work_dir or DEPLOY_DIR / host_name
    context = f" --context {host.context}" if host.context else ""
    describe = f"`kubectl{context} -n {ns} describe pods`"
    return [
        Step(
            f"label node {host.node}",
            _kubectl(host, "label", "node", host.node, f"{DEVICE_LABEL}={chosen}", "--overwrite"),
            f"is the node in the cluster (`kubectl{context} get nodes` lists {host.node})? "
            "see docs/deploy.md: join k3s as an agent",
        ),
        *_ship_steps(settings, host, chosen),
        Step(
            "remove the previous loader Job",
            _kubectl(host, "delete", "job", LOADER_JOB, "--ignore-not-found", namespace=ns),
            f"can kubectl reach the cluster (`kubectl{context} get nodes`)?",
        ),
        Step(
            f"apply overlay {chosen}",
            _kubectl(host, "apply", "-k", str(work_dir)),
            f"render it with `kubectl kustomize {work_dir}` and read the error above",
        ),
        Step(
            f"wait for the DaemonSet {DAEMONSET}",
            _kubectl(host, "rollout", "status", f"daemonset/{DAEMONSET}", timeout, namespace=ns),
            f"{describe}: ImagePullBackOff means the images are not on the node, Pending a missing node "
            f"label or too little memory, CrashLoopBackOff a failing container (`invoke logs --host {host_name}`)",
        ),
        Step(
            f"wait for the loader Job {LOADER_JOB}",
            _kubectl(host, "wait", "--for=condition=complete", f"job/{LOADER_JOB}", timeout, namespace=ns),
            f"`kubectl{context} -n {ns} logs job/{LOADER_JOB}`: it stores the model and registers the Gears script",
        ),
        Step(
            "check the Gears registration",
            _kubectl(
                host,
                "exec",
                f"daemonset/{DAEMONSET}",
                "-c",
                "redis",
                "--",
                "redis-cli",
                "-p",
                "6379",
                "RG.DUMPREGISTRATIONS",
                namespace=ns,
            ),  # fmt: skip
            f"no StreamReader registration: the loader's log (`kubectl{context} -n {ns} logs job/{LOADER_JOB}`) "
            "and Redis' (`invoke logs --host ... --container redis`)",
            expect="StreamReader",
        ),
    ]


def undeploy_steps(settings: Settings, host_name: str) -> list[Step]:
    """Every step of `invoke undeploy --host NAME`: the namespace (all of gearcam), then the node label."""
    host = find_host(settings, host_name)
    ns = settings.ship.namespace
    return [
        Step(
            f"delete namespace {ns}",
            _kubectl(host, "delete", "namespace", ns, "--ignore-not-found", "--wait=true"),
            "can kubectl reach the cluster? a namespace stuck in Terminating: `kubectl get all -n " + ns + "`",
        ),
        Step(
            f"unlabel node {host.node}",
            _kubectl(host, "label", "node", host.node, f"{DEVICE_LABEL}-"),
            f"is {host.node} still in the cluster (`kubectl get nodes`)?",
        ),
    ]


def logs_commands(
    settings: Settings,
    host_name: str,
    container: str | None = None,
    follow: bool = False,
    tail: int = 100,
    loader: bool = False,
) -> list[str]:
    """`kubectl logs` of the DaemonSet (every container, or one), or of the loader Job."""
    host = find_host(settings, host_name)
    target = f"job/{LOADER_JOB}" if loader else f"daemonset/{DAEMONSET}"
    args = ["logs", target, f"--tail={tail}", "--timestamps"]
    if container and not loader:
        args += ["-c", container]
    elif not loader:
        args += ["--all-containers", "--prefix"]
    if follow:
        args.append("--follow")
    return [_kubectl(host, *args, namespace=settings.ship.namespace)]

"""Shipping gearcam to edge nodes: the command lines of `invoke build/push/deploy/undeploy/logs`.

Everything here is plain data in, command lines out (no I/O), so the tests check the exact
commands without Docker or a cluster; `steps.run_steps` is the only part that runs anything,
through the invoke `Context` it is given. `workdir.prepare_deploy_dir` writes the per-host
kustomization that `deploy` applies.
"""

from gearcam.ship.images import (
    PLATFORMS,
    Artifacts,
    ImageSpec,
    build_commands,
    image_ref,
    image_specs,
    preflight_commands,
    push_commands,
    versions,
)
from gearcam.ship.kube import (
    DEVICE_LABEL,
    deploy_kustomization,
    deploy_steps,
    logs_commands,
    overlay_for,
    undeploy_steps,
)
from gearcam.ship.steps import Step, StepFailed, run_steps
from gearcam.ship.workdir import prepare_deploy_dir

__all__ = [
    "DEVICE_LABEL",
    "PLATFORMS",
    "Artifacts",
    "ImageSpec",
    "Step",
    "StepFailed",
    "build_commands",
    "deploy_kustomization",
    "deploy_steps",
    "image_ref",
    "image_specs",
    "logs_commands",
    "overlay_for",
    "preflight_commands",
    "prepare_deploy_dir",
    "push_commands",
    "run_steps",
    "undeploy_steps",
    "versions",
]

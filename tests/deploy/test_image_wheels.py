"""The app image's virtualenvs install from binary wheels on both architectures (plan B on arm64 included).

docker/image-wheels.txt records what pip on PyPI resolved each venv's pins to, per architecture
(scripts/record-image-wheels); these tests check, offline, that the record still matches the pins
and that every recorded wheel installs on the image's Python and glibc, so a pin without an arm64
wheel fails here rather than in an arm64 build nobody runs.
"""

from __future__ import annotations

import re

import pytest
from packaging.utils import parse_wheel_filename

from gearcam.config import PROJECT_ROOT
from gearcam.ship.wheels import ARCHES, TARGETS, WheelTarget, accepted_tags, pinned_versions, read_wheel_record

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile.app"
CASES = [pytest.param(target, arch, id=f"{target.name}-{arch}") for target in TARGETS for arch in ARCHES]


def recorded(target: WheelTarget, arch: str) -> dict[str, str]:
    """{package: version} of the wheels recorded for one venv and architecture."""
    return {w.name: w.version for w in read_wheel_record() if w.target == target.name and w.arch == arch}


def test_the_record_covers_every_venv_on_both_architectures_and_nothing_else() -> None:
    assert {(w.target, w.arch) for w in read_wheel_record()} == {(t.name, a) for t in TARGETS for a in ARCHES}


@pytest.mark.parametrize(("target", "arch"), CASES)
def test_every_pin_has_a_recorded_wheel_of_its_exact_version(target: WheelTarget, arch: str) -> None:
    wheels = recorded(target, arch)
    for name, version in pinned_versions(target).items():
        assert wheels.get(name) == version, (
            f"{target.requirements} pins {name}=={version}, the record has {wheels.get(name)} for {arch}: "
            "run scripts/record-image-wheels (it says which pin has no wheel)"
        )


@pytest.mark.parametrize(("target", "arch"), CASES)
def test_every_recorded_wheel_installs_on_the_images_python_and_glibc(target: WheelTarget, arch: str) -> None:
    accepted = accepted_tags(target.python, arch, target.glibc)
    for wheel in read_wheel_record():
        if wheel.target == target.name and wheel.arch == arch:
            assert wheel.tags & accepted, f"{wheel.filename} does not install on {target.name}'s Python on {arch}"


@pytest.mark.parametrize("arch", ARCHES)
def test_the_runtimes_cpu_engines_are_there_on_both_architectures(arch: str) -> None:
    app = next(target for target in TARGETS if target.name == "app")
    assert {"onnxruntime", "ai-edge-litert", "numpy", "pillow"} <= set(recorded(app, arch))


def test_the_gears_pins_have_no_wheel_for_the_runtimes_python() -> None:
    # Why the Gears venv runs on Python 3.11: numpy 1.26.4's newest wheels are for 3.12.
    numpy = "numpy-1.26.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert not parse_wheel_filename(numpy)[3] & accepted_tags((3, 13), "aarch64", (2, 41))
    assert parse_wheel_filename(numpy)[3] & accepted_tags((3, 12), "aarch64", (2, 41))


def test_a_wheel_for_a_newer_glibc_or_another_python_does_not_count() -> None:
    accepted = accepted_tags((3, 13), "aarch64", (2, 41))
    for filename in (
        "numpy-2.4.6-cp313-cp313-manylinux_2_42_aarch64.whl",
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_aarch64.whl",
        "numpy-2.4.6-cp313-cp313-manylinux_2_28_x86_64.whl",
    ):
        assert not parse_wheel_filename(filename)[3] & accepted, filename


def test_the_dockerfile_builds_each_venv_with_the_python_the_record_was_made_for() -> None:
    text = DOCKERFILE.read_text()
    app, gears = TARGETS
    assert re.search(r"(?m)^FROM debian:trixie-slim$", text)  # Python 3.13, glibc 2.41
    assert (app.python, app.glibc) == ((3, 13), (2, 41))
    assert re.search(r"/usr/bin/python3 -m venv --system-site-packages /opt/venv ", text)
    version = f"{gears.python[0]}.{gears.python[1]}"
    assert re.search(rf"(?m)^FROM python:{re.escape(version)}-slim-trixie AS gears-python$", text)
    assert re.search(rf"python{re.escape(version)} -m venv /opt/venv-gears ", text)
    # only the interpreter and its libraries: the image's `python3` stays Debian's
    assert not re.search(r"COPY --from=gears-python /usr/local/bin/(python3|python)?\s", text)

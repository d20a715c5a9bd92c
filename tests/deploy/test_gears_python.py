"""The Gears script's packages in RedisGears' Python 3.7: pinned by sha256, wheels that install there.

vermin checks the script's Python 3.7 syntax (tests/test_lint.py); this checks the packages the
module images install for it (docker/gears-requirements.txt): exact versions that satisfy
gears/requirements.txt, a wheel per architecture whose tags Python 3.7 on the image's glibc accepts
(no compiling on the Jetson), and a sha256 for every wheel.
"""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from gearcam.config import PROJECT_ROOT
from gearcam.ship.wheels import accepted_tags

PINS = PROJECT_ROOT / "docker" / "gears-requirements.txt"
# (arch, glibc) of the images' Python 3.7: L4T r32 is Ubuntu 18.04 (glibc 2.27); Dockerfile.redis uses focal (2.31).
TARGETS = {"aarch64": (2, 27), "x86_64": (2, 31)}


def requirement_lines(text: str) -> list[str]:
    """Requirement lines with their continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def pinned() -> dict[str, tuple[str, set[str]]]:
    """{package: (version, sha256s)} from docker/gears-requirements.txt."""
    out = {}
    for line in requirement_lines(PINS.read_text()):
        spec, *options = line.split(" --hash=sha256:")
        name, version = spec.strip().split("==")
        out[canonicalize_name(name)] = (version, {o.strip() for o in options})
    return out


def listed_wheels() -> dict[str, str]:
    """{wheel file name: sha256} from the comment block that records what was downloaded."""
    return dict(re.findall(r"(?m)^#\s+(\S+\.whl) ([0-9a-f]{64})$", PINS.read_text()))


def test_every_package_is_pinned_to_one_version_with_hashes() -> None:
    pins = pinned()
    assert set(pins) == {"numpy", "pillow", "opencv-python-headless", "imageio"}
    for name, (version, hashes) in pins.items():
        assert re.fullmatch(r"[0-9][0-9.]*", version), name
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_pins_satisfy_what_the_gears_script_asks_for() -> None:
    pins = pinned()
    for line in requirement_lines((PROJECT_ROOT / "gears" / "requirements.txt").read_text()):
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"{wanted.name} is not pinned in {PINS.name}"
        assert wanted.specifier.contains(pins[name][0]), f"{name}=={pins[name][0]} does not satisfy {line}"


def test_the_hashes_are_exactly_those_of_the_recorded_wheels() -> None:
    wheels = listed_wheels()
    by_package: dict[str, set[str]] = {}
    for filename, digest in wheels.items():
        name, version, _, _ = parse_wheel_filename(filename)
        assert pinned()[name][0] == str(version), filename
        by_package.setdefault(name, set()).add(digest)
    assert by_package == {name: hashes for name, (_, hashes) in pinned().items()}


@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_each_package_has_a_wheel_that_python_3_7_installs_on_the_image(arch: str) -> None:
    accepted = accepted_tags((3, 7), arch, TARGETS[arch])
    installable = {
        parse_wheel_filename(filename)[0]
        for filename in listed_wheels()
        if parse_wheel_filename(filename)[3] & accepted
    }
    assert installable == set(pinned()), f"no {arch} wheel for {set(pinned()) - installable}"


def test_a_wheel_for_a_newer_glibc_or_python_would_not_count() -> None:
    accepted = accepted_tags((3, 7), "aarch64", TARGETS["aarch64"])
    for filename in (
        "numpy-1.21.6-cp37-cp37m-manylinux_2_28_aarch64.whl",
        "numpy-1.21.6-cp38-cp38-manylinux2014_aarch64.whl",
    ):
        assert not parse_wheel_filename(filename)[3] & accepted, filename


@pytest.mark.parametrize("dockerfile", ["Dockerfile.jetson", "Dockerfile.redis"])
def test_the_images_install_only_these_wheels(dockerfile: str) -> None:
    text = re.sub(r"\\\n\s*", " ", (PROJECT_ROOT / "docker" / dockerfile).read_text())
    install = re.search(r"-m pip install [^\n]*gears-requirements\.txt[^\n]*", text)
    assert install is not None
    assert "--require-hashes" in install[0] and "--only-binary=:all:" in install[0]
    # gears/requirements.txt must then be satisfied without fetching anything more
    assert re.search(r"-m pip install [^\n]*--no-index[^\n]*-r /build/gears/requirements\.txt", text)

"""Which REQUIREMENTS strings are names and which are direct references (a path or URL pip takes as it is)."""

from __future__ import annotations

import pytest

from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.requirements import is_direct_reference, requirement_name


@pytest.mark.parametrize(
    "requirement",
    [
        "/build/dist/rgsync-1.2.0-py3-none-any.whl",
        "./dist/lib-0.1.tar.gz",
        "../lib",
        "wheels/lib-0.1-py3-none-any.whl",
        "file:///tmp/lib-0.1-py3-none-any.whl",
        "git+https://github.com/RedisGears/redisgears-py.git",
        "https://example.org/lib-0.1-py3-none-any.whl",
        "lib-0.1-py3-none-any.whl",
    ],
)
def test_paths_and_urls_are_direct_references_without_a_name(requirement: str) -> None:
    assert is_direct_reference(requirement)
    with pytest.raises(GearsError, match="is not a valid requirement"):
        requirement_name(requirement)


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("numpy", "numpy"),
        ("opencv-python-headless<4.5", "opencv-python-headless"),
        ("redis==3.5.3", "redis"),
        ("pkg[extra]>=1.0", "pkg"),
        ("pkg @ https://example.org/pkg-1.0-py3-none-any.whl", "pkg"),
    ],
)
def test_names_keep_their_name(requirement: str, name: str) -> None:
    assert not is_direct_reference(requirement)
    assert requirement_name(requirement) == name

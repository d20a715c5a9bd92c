"""--docs: the latest run replaces only the marked section of the page, and its plots are copied next to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gearcam.bench.publish import BEGIN, END, publish


def test_the_marked_section_is_replaced_and_the_rest_kept(tiny_run: tuple[Path, dict[str, Any]],
                                                          tmp_path: Path) -> None:  # fmt: skip
    out, result = tiny_run
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(f"# Benchmarks\n\nHow to run.\n\n{BEGIN}\nold tables\n{END}\n\nAfterword.\n")
    plots = sorted(out.glob("*.png"))
    publish(result, plots, page, tmp_path / "docs" / "benchmarks")
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nHow to run.\n\n" + BEGIN) and text.endswith(END + "\n\nAfterword.\n")
    assert "old tables" not in text
    assert "### gearcam benchmark: tiny run" in text and "#### Model serving" in text
    for plot in plots:
        assert (tmp_path / "docs" / "benchmarks" / plot.name).read_bytes() == plot.read_bytes()
        assert f"](benchmarks/{plot.name})" in text
    publish(result, plots, page, tmp_path / "docs" / "benchmarks")  # twice: still one section
    assert page.read_text().count(BEGIN) == 1


def test_a_page_without_the_markers_is_refused_untouched(tiny_run: tuple[Path, dict[str, Any]],
                                                         tmp_path: Path) -> None:  # fmt: skip
    _, result = tiny_run
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n")
    with pytest.raises(ValueError, match="lacks the markers"):
        publish(result, [], page, tmp_path / "plots")
    assert page.read_text() == "# Benchmarks\n"

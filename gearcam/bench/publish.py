"""``--docs``: put a run's tables and plots into docs/benchmarks.md, between its two markers.

The hand-written part of docs/benchmarks.md (how to run, what each figure means) stays;
only the text between ``BEGIN`` and ``END`` is replaced, and the plots are copied to
docs/benchmarks/ so the page shows them from the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gearcam.bench.report import format_markdown
from gearcam.config import PROJECT_ROOT

__all__ = ["BEGIN", "DOCS_DIR", "DOCS_PAGE", "END", "publish"]

DOCS_PAGE = PROJECT_ROOT / "docs" / "benchmarks.md"
DOCS_DIR = PROJECT_ROOT / "docs" / "benchmarks"
BEGIN = "<!-- BEGIN latest run: written by `python -m gearcam.bench --docs`; do not edit by hand -->"
END = "<!-- END latest run -->"


def publish(result: dict[str, Any], plots: list[Path], page: Path = DOCS_PAGE, docs_dir: Path = DOCS_DIR) -> None:
    """Replace the latest-run section of ``page`` with ``result``; copy ``plots`` into ``docs_dir``."""
    text = page.read_text()
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{page} lacks the markers {BEGIN!r} … {END!r}; add them where the latest run goes")
    docs_dir.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        shutil.copyfile(plot, docs_dir / plot.name)
    relative = [f"{docs_dir.relative_to(page.parent)}/{p.name}" for p in plots]
    body = format_markdown(result, relative)
    body = "\n".join("##" + line if line.startswith("#") else line for line in body.splitlines())
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(f"{head}{BEGIN}\n\n{body}\n\n{END}{tail}")

"""Redis reply values as text, for every gearcam program that reads replies as bytes.

redis-py without `decode_responses` hands back bytes (gearcam keeps frames binary, so no client
decodes for it). Names, fields and error texts read from those replies are shown in logs, pages
and status tables, where a stray byte must not raise: what is not UTF-8 reads as U+FFFD.
"""

from __future__ import annotations

from typing import Any

__all__ = ["text"]


def text(value: Any) -> str:
    """`value` as str: bytes decoded (undecodable bytes replaced), anything else through str()."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

"""Server file paths never reach a client: answers name files, never say where they live."""

from __future__ import annotations

import re
from typing import Any

ABSOLUTE = re.compile(r"(?<![\w.:/\\])(?:[A-Za-z]:)?(?:[\\/][^\s\\/'\"]+)+[\\/]([^\s\\/'\"]+)")


def names_only(text: str) -> str:
    """``text`` with every absolute path replaced by its file name."""
    return ABSOLUTE.sub(lambda m: m.group(1), text)


def scrub(value: Any) -> Any:
    """A JSON-ready value with every string passed through :func:`names_only`."""
    if isinstance(value, str):
        return names_only(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value

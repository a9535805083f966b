"""Atomic writes: a reader, or a run killed mid-write, never sees half a file.

Everything goes to a temporary file in the destination's folder (same file system), then
``os.replace`` puts it in place in one step; on an error the temporary file is removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that go by it still work),
    renamed over ``path`` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, data: Any, **dump_options: Any) -> Path:
    """Write ``data`` as JSON (indented unless told otherwise) plus a newline, atomically."""
    dump_options.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(data, **dump_options) + "\n")

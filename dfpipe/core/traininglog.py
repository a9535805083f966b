"""The per-epoch training log (Keras CSVLogger layout): written by training, read by the
curves, evaluate and the monitor, so its format lives in one place."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from dfpipe.core.atomic import atomic_path
from dfpipe.core.errors import PipelineError


def _number(cell: str | None) -> float | None:
    """A log cell as a number; ``NA``, blanks and NaN become None."""
    try:
        out = float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def parse_training_log(text: str) -> list[dict[str, float | None]]:
    """Rows of a log, skipping a row still being written and repeated headers (a log read
    while training appends to it)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines:
        return []
    reader = csv.reader(io.StringIO("".join(lines)))
    header = next(reader, None) or []
    rows = []
    for cells in reader:
        if not cells or cells == header or len(cells) != len(header):
            continue
        rows.append({key: _number(cell) for key, cell in zip(header, cells, strict=True)})
    return rows


def read_training_log(path: Path) -> dict[str, list[float]]:
    """The log's numeric columns (a column with a missing or non-numeric cell is left out);
    PipelineError when the file is unreadable or is not a training log."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"cannot read training log {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path} is not a training log (not text)") from None
    rows = parse_training_log(text)
    if not rows or "epoch" not in rows[0]:
        raise PipelineError(f"{path} is not a Keras CSVLogger log (no 'epoch' column or no rows)")
    return {name: [row[name] for row in rows] for name in rows[0]
            if all(row[name] is not None for row in rows)}  # type: ignore[misc]


def write_training_log(path: Path, history: Sequence[dict[str, float]]) -> None:
    """Write the whole log (epoch, then sorted keys) atomically from the committed history,
    so no epoch appears twice or goes missing after a resume; no history, no file."""
    if not history:
        Path(path).unlink(missing_ok=True)
        return
    keys = sorted({k for row in history for k in row if k != "epoch"})
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *keys])
        for row in history:
            writer.writerow([int(row["epoch"]), *(row.get(k, "") for k in keys)])

"""Judge many videos without a server (``app.py predict``): one row per video, CSV or JSON.

A video that cannot be read, is not an allowed container, or breaks the analysis in any way
becomes an ``error`` row with the reason in its ``error`` column; the batch goes on. The CSV is
written as the batch goes (each row appended and flushed), so a killed run keeps every verdict
already made; the JSON document, which holds every full result, is written at the end.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from dfpipe.core.errors import PipelineError, describe
from dfpipe.core.labels import VIDEO_EXTENSIONS
from dfpipe.extract.video import VideoError
from dfpipe.serve.frames import Limits

ROW_FIELDS: tuple[str, ...] = (
    "path", "status", "verdict", "score", "threshold", "margin", "borderline", "aggregate",
    "faces", "frames_sampled", "frames_with_face", "frames_read", "fps", "duration_s", "width",
    "height", "seconds", "decode_s", "detect_s", "classify_s", "message", "error")

log = logging.getLogger(__name__)


class Judge(Protocol):
    """What predict needs of :class:`dfpipe.serve.analyzer.Analyzer`."""

    def analyze(self, path: Path, *args: Any, **kwargs: Any) -> Any: ...


def find_videos(inputs: Sequence[Path]) -> list[Path]:
    """Video files named directly or found (recursively) in the folders given, in order."""
    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            # not is_file(): a dangling link or an unreadable entry still gets its error row
            found.extend(sorted(p for p in item.rglob("*")
                                if not p.is_dir() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif item.is_file():
            found.append(item)
        else:
            raise PipelineError(f"not found: {item} (give video files or folders of videos)")
    if not found:
        raise PipelineError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) in "
                            f"{', '.join(str(p) for p in inputs)}")
    return found


def video_row(path: Path, result: dict[str, Any] | None, error: str = "") -> dict[str, Any]:
    """One CSV row per video: verdict, score, counts and stage timings."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS, "")
    row["path"] = str(path)
    if result is None:
        row.update(status="error", verdict="ERROR", message=error, error=error)
        return row
    video, timing = result["video"], result["timing"]
    row.update(status="ok" if result["faces"] else "no_face", verdict=result["verdict"],
               score=result["score"], threshold=result["threshold"], margin=result["margin"],
               borderline=result["borderline"], aggregate=result["aggregate"],
               seconds=timing["total_s"], decode_s=timing["decode_s"],
               detect_s=timing["detect_s"] + timing.get("crop_s", 0.0),
               classify_s=timing["classify_s"], message=result["message"])
    row.update({k: video[k] for k in ("faces", "frames_sampled", "frames_with_face",
                                      "frames_read", "fps", "duration_s", "width", "height")})
    return {k: ("" if v is None else v) for k, v in row.items()}


def predict_videos(analyzer: Judge, videos: Sequence[Path], out: Path | None = None,
                   limits: Limits | None = None) -> list[dict[str, Any]]:
    """Judge each video; whatever goes wrong with one becomes its ``error`` row, not a crash.

    ``out`` .csv gets each row as soon as it is made; .json is written (atomically) at the end.
    """
    suffix = _check_out(Path(out)) if out is not None else None
    rows, full = [], []
    with _csv_rows(Path(out) if suffix == ".csv" else None) as append:
        for path in tqdm(videos, desc="judging", unit="video", dynamic_ncols=True):
            try:
                result = analyzer.analyze(path, limits=limits).result
                row, record = video_row(path, result), {"path": str(path), "result": result}
            except (VideoError, PipelineError) as exc:
                row, record = video_row(path, None, str(exc)), {"path": str(path),
                                                               "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one file never ends the batch
                log.warning("%s: %s", path, describe(exc), exc_info=log.isEnabledFor(logging.DEBUG))
                message = f"could not be analysed: {describe(exc)}"
                row, record = video_row(path, None, message), {"path": str(path),
                                                              "error": message}
            append(row)
            rows.append(row)
            full.append(record)
    if suffix == ".json":
        write_rows(Path(out), rows, full)
    return rows


@contextmanager
def _csv_rows(out: Path | None) -> Iterator[Any]:
    """A function appending one row to ``out`` (header first), flushed at once; a no-op
    without ``out``."""
    if out is None:
        yield lambda row: None
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ROW_FIELDS))
        writer.writeheader()
        fh.flush()

        def append(row: dict[str, Any]) -> None:
            writer.writerow(row)
            fh.flush()

        yield append


def write_rows(out: Path, rows: list[dict[str, Any]], full: list[dict[str, Any]]) -> None:
    """Write the per-video table as CSV, or rows plus full results as JSON (by suffix)."""
    suffix = _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        if suffix == ".csv":
            writer = csv.DictWriter(fh, fieldnames=list(ROW_FIELDS))
            writer.writeheader()
            writer.writerows(rows)
        else:
            json.dump({"videos": rows, "results": full}, fh, indent=2)
    os.replace(tmp, out)


def _check_out(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise PipelineError(f"--out must end in .csv or .json, not {out.name}")
    return suffix

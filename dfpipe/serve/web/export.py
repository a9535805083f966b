"""A finished job as CSV (one row per face crop) or as the downloadable JSON document."""

from __future__ import annotations

import csv
import io
from typing import Any

FACE_FIELDS: tuple[str, ...] = (
    "job_id", "video", "verdict", "video_score", "threshold", "margin", "aggregate", "frame",
    "time_s", "face", "score", "call", "confidence", "face_size", "x1", "y1", "x2", "y2")


def _cell(value: Any) -> Any:
    """No formula injection: text a spreadsheet would evaluate is quoted with a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def job_csv(job: dict[str, Any]) -> str:
    """One row per face with the video's verdict repeated; a no-face video gives one row."""
    result = job.get("result") or {}
    base = {"job_id": job["id"], "video": job["filename"], "verdict": result.get("verdict"),
            "video_score": result.get("score"), "threshold": result.get("threshold"),
            "margin": result.get("margin"), "aggregate": result.get("aggregate")}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FACE_FIELDS), lineterminator="\n")
    writer.writeheader()
    faces = result.get("faces") or []
    for face in faces:
        x1, y1, x2, y2 = face["box"]
        row = {**base, "frame": face["frame"], "time_s": face["time_s"], "face": face["face"],
               "score": face["score"], "call": face["call"], "confidence": face["confidence"],
               "face_size": face["face_size"], "x1": x1, "y1": y1, "x2": x2, "y2": y2}
        writer.writerow({k: _cell(v) for k, v in row.items()})
    if not faces:
        writer.writerow({k: _cell(base.get(k)) for k in FACE_FIELDS})
    return out.getvalue()

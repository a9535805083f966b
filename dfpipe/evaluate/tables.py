"""The tables papers print: per manipulation method, per compression, and the summary row.

A detector that scores 0.99 on FaceForensics++ overall can still miss NeuralTextures; the
field therefore reports each method's fakes against all the reals of the set, and the same
per compression. Each row gives frame (crop) AUC, video AUC, EER, AP and accuracy at the
model's video threshold. A video where no face was found scores 0.5 in the video numbers and
is counted in ``failed`` (the DFDC rule), so a detector cannot improve by finding fewer faces.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from dfpipe.core.files import SPLIT_REPORT
from dfpipe.core.labels import FAKE, REAL
from dfpipe.core.manifest import manifest_paths, read_manifests
from dfpipe.evaluate.coverage import UNCOVERED_SCORE, Uncovered
from dfpipe.evaluate.metrics import equal_error_rate, predict

log = logging.getLogger(__name__)

PER_METHOD_CSV = "per_method.csv"
METRIC_COLUMNS: tuple[str, ...] = ("frame_auc", "video_auc", "eer", "ap", "acc")
PER_METHOD_COLUMNS: tuple[str, ...] = ("level", "name", "real_videos", "fake_videos", "failed",
                                       *METRIC_COLUMNS, "videos_scored")
INFO_KEYS: tuple[str, ...] = ("dataset", "method", "compression")


def manifest_root(data_root: Path) -> Path | None:
    """The preprocess output behind ``data_root``: itself, or the input its split report names."""
    data_root = Path(data_root)
    if manifest_paths(data_root):
        return data_root
    try:
        given = json.loads((data_root / SPLIT_REPORT).read_text(encoding="utf-8")).get("input")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(given) if given and manifest_paths(Path(given)) else None


def video_info(data_root: Path) -> dict[str, dict[str, str | None]]:
    """Video id -> dataset, method, compression, as the manifest recorded them."""
    root = manifest_root(data_root)
    if root is None:
        log.info("no manifest behind %s: per-method rows need the preprocess output", data_root)
        return {}
    return {str(r["video_id"]): {k: r.get(k) for k in INFO_KEYS} for r in read_manifests(root)}


def measure(y_crops: np.ndarray, s_crops: np.ndarray, y_videos: np.ndarray,
            s_videos: np.ndarray, failed: Sequence[int], threshold: float) -> dict[str, Any]:
    """The row's numbers; failed videos (their labels) join the video level at 0.5."""
    y_v = np.concatenate([np.asarray(y_videos, dtype=np.int64),
                          np.asarray(failed, dtype=np.int64)])
    s_v = np.concatenate([np.asarray(s_videos, dtype=np.float64),
                          np.full(len(failed), UNCOVERED_SCORE)])
    row: dict[str, Any] = {"real_videos": int((y_v == REAL).sum()),
                           "fake_videos": int((y_v == FAKE).sum()), "failed": len(failed),
                           **dict.fromkeys(METRIC_COLUMNS)}
    if len(y_crops) and len(set(np.asarray(y_crops).tolist())) == 2:
        row["frame_auc"] = float(skm.roc_auc_score(y_crops, s_crops))
    if len(y_v):
        row["acc"] = float(skm.accuracy_score(y_v, predict(s_v, threshold)))
    if row["real_videos"] and row["fake_videos"]:
        row["video_auc"] = float(skm.roc_auc_score(y_v, s_v))
        row["eer"] = equal_error_rate(y_v, s_v)[0]
        row["ap"] = float(skm.average_precision_score(y_v, s_v, pos_label=FAKE))
    return row


def per_method_rows(crop_videos: Sequence[str], y_crops: np.ndarray, s_crops: np.ndarray,
                    video_ids: Sequence[str], y_videos: np.ndarray, s_videos: np.ndarray,
                    uncovered: Iterable[Uncovered] | None, threshold: float,
                    info: Mapping[str, Mapping[str, str | None]]) -> list[dict[str, Any]]:
    """Rows ``all``, then each method (its fakes against every real) and each compression."""
    y_crops, s_crops = np.asarray(y_crops), np.asarray(s_crops)
    y_videos, s_videos = np.asarray(y_videos), np.asarray(s_videos)
    uncovered = list(uncovered or [])
    crop_videos = np.asarray(crop_videos, dtype=object)
    labels = {v: int(y) for v, y in zip(video_ids, y_videos, strict=True)}
    labels.update({u.video_id: u.label for u in uncovered})

    def row(level: str, name: str, keep) -> dict[str, Any]:
        c = np.array([keep(v) for v in crop_videos], dtype=bool)
        v = np.array([keep(x) for x in video_ids], dtype=bool)
        failed = [u.label for u in uncovered if keep(u.video_id)]
        return {"level": level, "name": name,
                **measure(y_crops[c], s_crops[c], y_videos[v], s_videos[v], failed, threshold)}

    def field(video: str, key: str) -> str | None:
        return (info.get(video) or {}).get(key)

    rows = [row("all", "all", lambda v: True)]
    methods = sorted({field(v, "method") for v, y in labels.items() if y == FAKE} - {None})
    for method in methods:
        rows.append(row("method", method, lambda v, m=method: labels.get(v) == REAL
                        or field(v, "method") == m))
    for comp in sorted({field(v, "compression") for v in labels} - {None}):
        rows.append(row("compression", comp, lambda v, c=comp: field(v, "compression") == c))
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render(rows: Sequence[Mapping[str, Any]], selection: str | None = None) -> str:
    """The per-method table as text for metrics_report.txt."""
    head = (f"{'level':<12}{'name':<22}{'real':>6}{'fake':>6}{'failed':>8}"
            + "".join(f"{c:>11}" for c in METRIC_COLUMNS))
    lines = ["", "Per manipulation method and compression (each method's fakes against all "
             "reals; failed videos score 0.5)"]
    if selection:
        lines.append(f"videos: {selection}")
    lines += [head] + [f"{r['level']:<12}{str(r['name'])[:21]:<22}{r['real_videos']:>6}"
                       f"{r['fake_videos']:>6}{r['failed']:>8}"
                       + "".join(f"{_num(r[c]):>11}" for c in METRIC_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


def write_per_method(output: Path, rows: Sequence[Mapping[str, Any]], report_text: Path,
                     selection: str | None = None) -> Path:
    """per_method.csv (``videos_scored`` says which videos: a split, an official test list or
    every video), and the table appended to the text report."""
    path = Path(output) / PER_METHOD_CSV
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=PER_METHOD_COLUMNS)
        writer.writeheader()
        writer.writerows({**{k: r.get(k) for k in PER_METHOD_COLUMNS},
                          "videos_scored": selection} for r in rows)
    if Path(report_text).is_file():
        with open(report_text, "a", encoding="utf-8") as fh:
            fh.write(render(rows, selection))
    return path

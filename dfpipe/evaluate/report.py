"""Evaluation outputs: metrics.json, metrics_report.txt and the prediction tables.

The text report is rendered from the very dict that is written to metrics.json, so the
two can never disagree. Every file is written to a temporary name and then renamed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dfpipe.core.atomic import write_text_atomic
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.evaluate.metrics import METRIC_NAMES

METRICS_JSON = "metrics.json"
METRICS_TEXT = "metrics_report.txt"
CROPS_CSV = "predictions_crops.csv"
VIDEOS_CSV = "predictions_videos.csv"
CROP_COLUMNS: tuple[str, ...] = (
    "path", "video_id", "group", "frame", "label", "label_id", "score", "predicted", "correct")
VIDEO_COLUMNS: tuple[str, ...] = (
    "video_id", "group", "label", "label_id", "crops", "crops_used", "score", "predicted",
    "correct", "crop_score_min", "crop_score_max")
LEVELS: tuple[tuple[str, str], ...] = (("crops", "crops (faces)"), ("videos", "videos"))
METRIC_LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
    "precision": "precision (fake)", "recall": "recall (fake)", "f1": "F1 (fake)",
    "roc_auc": "ROC-AUC", "average_precision": "average precision", "eer": "equal error rate",
    "log_loss": "log loss", "brier_score": "Brier score",
}


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """metrics.json: strict JSON (an undefined value is null, never NaN)."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """A CSV with a header row; scores are written with full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(interval: Sequence[float] | None) -> str:
    return "" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def render_text(result: Mapping[str, Any]) -> str:
    """The human report: model, data, threshold and its origin, counts, metrics, figures."""
    model, data, thr = result["model"], result["data"], result["threshold"]
    agg, boot = result["aggregation"], result.get("bootstrap")
    lines = ["dfpipe evaluation report", "=" * 24, f"created      {result['created']}"]
    details = ", ".join(f"{k} {model[k]}" for k in ("backbone", "input_size", "created")
                        if model.get(k) not in (None, ""))
    lines.append(f"model        {model['path']}" + (f" ({details})" if details else ""))
    lines.append(f"data         {data['root']}, split '{data['split']}' "
                 f"(videos from {data['source']})")
    lines.append(f"threshold    videos {thr['value']:.4f} from {thr['source']}")
    crop = result.get("crop_threshold")
    if crop:
        lines.append(f"             crops  {crop['value']:.4f} from {crop['source']}")
    lines.append("             P(fake) >= threshold is called fake")
    lines.append(f"aggregation  {agg['rule']}: {agg['description']}"
                 + (f" (from {agg['source']})" if agg.get("source") else ""))
    op = result.get("operating_point")
    if op:
        m = op["measured"]
        k = m["crops_per_video"]
        lines.append(f"per video    {k if k else 'all'} crops drawn evenly in time: "
                     f"{m['crops_used']} used of {m['crops_found']} found")
        if op.get("val"):
            lines.append(f"             at the threshold: FPR {_num(m['fpr'])}, TPR "
                         f"{_num(m['tpr'])} here; FPR {_num(op['val'].get('fpr'))}, TPR "
                         f"{_num(op['val'].get('tpr'))} on the validation videos")
        if op.get("warning"):
            lines.append(f"             warning: {op['warning']}")
    if boot:
        lines.append(f"bootstrap    {boot['resamples']} resamples, seed {boot['seed']}, "
                     f"{boot['confidence'] * 100:.0f}% percentile intervals; crops and "
                     "videos are resampled whole identity groups at a time")
    else:
        lines.append("bootstrap    off (no confidence intervals)")
    cov = result.get("coverage") or {}
    if cov.get("known"):
        reasons = ", ".join(f"{k} {v}" for k, v in cov["uncovered_by_reason"].items()) or "none"
        lines.append(f"coverage     {cov['videos_scored']} of {cov['videos_in_split']} videos "
                     f"scored ({100 * cov['fraction']:.1f}%); uncovered: {reasons}")
    elif cov:
        lines.append(f"coverage     unknown: {cov['note']}")
    lines += ["", "Counts", f"  {'':16}{'total':>8}{'real':>8}{'fake':>8}"]
    for key, name in LEVELS:
        lvl = result[key]
        lines.append(f"  {name:16}{lvl['count']:>8}{lvl['real']:>8}{lvl['fake']:>8}")
    lines += ["", "Metrics (fake = positive class; 95% bootstrap interval in brackets)",
              f"  {'metric':20}{'crops':>8}  {'':20}{'videos':>8}"]
    for name in METRIC_NAMES:
        cells = []
        for key, _ in LEVELS:
            lvl = result[key]
            ci = (lvl.get("ci") or {}).get(name)
            cells.append(f"{_num(lvl['metrics'][name]):>8}  {_ci(ci):20}")
        lines.append(f"  {METRIC_LABELS[name]:20}{cells[0]}{cells[1]}".rstrip())
    for key, name in LEVELS:
        eer_thr = result[key].get("eer_threshold")
        if eer_thr is not None:
            lines.append(f"  EER reached near threshold {eer_thr:.4f} ({name})")
    lines += ["", "Confusion matrices (rows: true class, columns: predicted class)"]
    for key, name in LEVELS:
        cm = result[key]["confusion_matrix"]
        lines.append(f"  {name:16}{'pred ' + CLASS_NAMES[0]:>12}{'pred ' + CLASS_NAMES[1]:>12}")
        lines.append(f"  {'  true ' + CLASS_NAMES[0]:16}{cm['tn']:>12}{cm['fp']:>12}")
        lines.append(f"  {'  true ' + CLASS_NAMES[1]:16}{cm['fn']:>12}{cm['tp']:>12}")
    undefined = [(name, metric, reason) for key, name in LEVELS
                 for metric, reason in result[key]["undefined"].items()]
    if undefined:
        lines += ["", "Undefined metrics"]
        lines += [f"  {name}: {METRIC_LABELS[m]}: {reason}" for name, m, reason in undefined]
    half = result.get("videos_uncovered_at_half")
    if half:
        lines += ["", f"Videos with the {half['count'] - result['videos']['count']} uncovered "
                      "ones scored 0.5 (DFDC convention), beside the covered-only videos above",
                  f"  {'metric':20}{'videos':>8}  {'':20}"]
        for name in METRIC_NAMES:
            ci = (half.get("ci") or {}).get(name)
            lines.append(f"  {METRIC_LABELS[name]:20}{_num(half['metrics'][name]):>8}  "
                         f"{_ci(ci)}".rstrip())
    lines += ["", "Figures"] + [f"  {f}" for f in result.get("figures", [])]
    lines += [f"  (not drawn) {f}: {why}" for f, why in result.get("skipped_figures", {}).items()]
    lines += ["", "Files"] + [f"  {f}" for f in result.get("files", [])]
    return "\n".join(lines) + "\n"


def write_report(output: Path, result: Mapping[str, Any],
                 crop_rows: Iterable[Mapping[str, Any]],
                 video_rows: Iterable[Mapping[str, Any]]) -> list[Path]:
    """Write the four report files into ``output``; returns their paths."""
    output = Path(output)
    return [
        write_csv(output / CROPS_CSV, CROP_COLUMNS, crop_rows),
        write_csv(output / VIDEOS_CSV, VIDEO_COLUMNS, video_rows),
        write_json(output / METRICS_JSON, result),
        write_text_atomic(output / METRICS_TEXT, render_text(result)),
    ]

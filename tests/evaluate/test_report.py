"""The text report says what metrics.json says; files are strict JSON and complete CSVs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dfpipe.evaluate import metrics, report


def make_result(one_class: bool = False) -> dict[str, Any]:
    if one_class:
        y, s, vy, vs = [0, 0, 0], [0.1, 0.7, 0.2], [0], [0.33]
    else:
        y, s = [0, 0, 0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.45, 0.6, 0.7, 0.4, 0.8, 0.9]
        vy, vs = [0, 0, 1, 1], [0.15, 0.6, 0.6, 0.85]
    frames = metrics.binary_metrics(y, s, 0.5)
    frames["ci"] = metrics.bootstrap_ci(y, s, 0.5, resamples=50, seed=0)
    videos = metrics.binary_metrics(vy, vs, 0.5)
    videos["ci"] = None
    return {
        "created": "2026-01-01T00:00:00+00:00", "dfpipe_version": "0",
        "model": {"path": "models/m.h5", "backbone": "xception", "input_size": 299,
                  "created": None, "training_log": None},
        "data": {"root": "preprocessed_split", "split": "test", "source": "split.csv"},
        "threshold": {"value": 0.5, "source": "the model metadata (validation: youden)"},
        "aggregation": {"rule": "mean", "description": "Plain average."},
        "bootstrap": {"resamples": 50, "seed": 0, "confidence": 0.95},
        "crops": frames, "videos": videos,
        "figures": ["roc_curves.png"], "skipped_figures": {"training_curves.png": "no log"},
        "files": [report.METRICS_JSON],
    }


def fmt(value: float | None) -> list[str]:
    return ["n/a"] if value is None else [f"{value:.4f}"]


def metric_tokens(text: str, label: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"  {label}  "))
    return re.findall(r"n/a|-?\d+\.\d+", line[len(label) + 2:])


@pytest.mark.parametrize("one_class", [False, True])
def test_text_report_numbers_equal_metrics_json(tmp_path, one_class):
    result = make_result(one_class)
    report.write_report(tmp_path, result, [], [])
    data = json.loads((tmp_path / report.METRICS_JSON).read_text())
    text = (tmp_path / report.METRICS_TEXT).read_text()
    for name, label in report.METRIC_LABELS.items():
        want = []
        for level in ("crops", "videos"):
            want += fmt(data[level]["metrics"][name])
            ci = (data[level]["ci"] or {}).get(name)
            want += [f"{v:.4f}" for v in ci] if ci else []
        assert metric_tokens(text, label) == want, name
    for level, title in (("crops", "crops (faces)"), ("videos", "videos")):
        lvl = data[level]
        counts = next(ln for ln in text.splitlines() if ln.startswith(f"  {title}  ")
                      and "pred" not in ln)
        assert counts.split()[-3:] == [str(lvl["count"]), str(lvl["real"]), str(lvl["fake"])]
    cm = re.findall(r"true (?:real|fake)\s+(\d+)\s+(\d+)", text)
    for level, rows in zip(("crops", "videos"), (cm[:2], cm[2:]), strict=True):
        c = data[level]["confusion_matrix"]
        assert rows == [(str(c["tn"]), str(c["fp"])), (str(c["fn"]), str(c["tp"]))]
    assert "0.5000 from the model metadata (validation: youden)" in text
    assert "models/m.h5 (backbone xception, input_size 299)" in text
    assert "(not drawn) training_curves.png: no log" in text


def test_undefined_metrics_are_null_in_json_and_explained_in_text(tmp_path):
    report.write_report(tmp_path, make_result(one_class=True), [], [])
    raw = (tmp_path / report.METRICS_JSON).read_text()
    assert "NaN" not in raw
    data = json.loads(raw)
    assert data["crops"]["metrics"]["roc_auc"] is None
    text = (tmp_path / report.METRICS_TEXT).read_text()
    assert "Undefined metrics" in text
    assert "crops (faces): ROC-AUC: needs both real and fake samples; this set has only real" \
        in text


def test_nan_cannot_reach_metrics_json(tmp_path):
    with pytest.raises(ValueError):
        report.write_json(tmp_path / "m.json", {"x": float("nan")})
    assert not (tmp_path / "m.json").exists()


def test_prediction_tables_have_header_and_rows(tmp_path):
    rows = [{"path": "test/real/v/000001_00.jpg", "video_id": "v", "group": "g", "frame": 1,
             "label": "real", "label_id": 0, "score": 0.123456789, "predicted": "real",
             "correct": 1}]
    videos = [{"video_id": "v", "group": "g", "label": "real", "label_id": 0, "crops": 1,
               "crops_used": 1,
               "score": 0.123456789, "predicted": "real", "correct": 1,
               "crop_score_min": 0.123456789, "crop_score_max": 0.123456789}]
    paths = report.write_report(tmp_path, make_result(), rows, videos)
    assert sorted(p.name for p in paths) == sorted(
        [report.CROPS_CSV, report.VIDEOS_CSV, report.METRICS_JSON, report.METRICS_TEXT])
    with open(tmp_path / report.CROPS_CSV, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == list(report.CROP_COLUMNS)
    assert float(read[0]["score"]) == 0.123456789
    with open(tmp_path / report.VIDEOS_CSV, newline="") as fh:
        assert list(next(csv.DictReader(fh))) == list(report.VIDEO_COLUMNS)
    assert sorted(Path(tmp_path).glob(".*")) == []  # no temporary file left behind

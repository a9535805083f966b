"""bench/bench_detection.py: split.py's path, train.py's code, the TEST split scored."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA
from sklearn.metrics import roc_auc_score

from dfpipe.core.errors import PipelineError

DFDC = SHARED_DATA / "dfdc_faces"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_detection",
                                                  REPO / "bench" / "bench_detection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()
KNOWN = {"epochs", "lr", "augment", "head_epochs", "backbone"}


def test_train_args_are_parsed_as_json_or_text() -> None:
    got = bench.parse_train_args(["head-epochs=2", "lr=3e-4", "augment=false",
                                  "backbone=tiny"], KNOWN)
    assert got == {"head_epochs": 2, "lr": 3e-4, "augment": False, "backbone": "tiny"}


@pytest.mark.parametrize(("pair", "message"), [
    ("epochs", "write KEY=VALUE"),
    ("sbi=true", "--train-arg sbi: not a training option"),
])
def test_bad_train_args_are_refused(pair: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        bench.parse_train_args([pair], KNOWN)


def test_named_option_and_train_arg_cannot_both_set_a_field() -> None:
    args = bench.parse_args(["--epochs", "3", "--train-arg", "epochs=4"])
    with pytest.raises(PipelineError, match="given twice"):
        bench.train_options(args, KNOWN)
    args = bench.parse_args(["--epochs", "3", "--train-arg", "head_epochs=1"])
    assert bench.train_options(args, KNOWN) == {"weights": "none", "epochs": 3,
                                                "head_epochs": 1, "seed": 42}


def test_rows_take_the_first_lines(tmp_path: Path) -> None:
    data = tmp_path / "faces"
    data.mkdir()
    (data / "labels.csv").write_text("path,label\n" + "".join(
        f"x{i}.jpg,real\n" for i in range(10)), encoding="utf-8")
    out = bench.subset_labels(data, 4, tmp_path / "w" / "labels.csv")
    assert out.read_text().splitlines() == ["path,label", "x0.jpg,real", "x1.jpg,real",
                                            "x2.jpg,real", "x3.jpg,real"]
    with pytest.raises(PipelineError, match="not found"):
        bench.subset_labels(tmp_path / "nowhere", 4, tmp_path / "w" / "l.csv")


@pytest.mark.slow
@pytest.mark.skipif(not (DFDC / "labels.csv").is_file(), reason="../shared/data is absent")
def test_bench_scores_the_held_out_test_split(tmp_path: Path) -> None:
    work = tmp_path / "work"
    cmd = [sys.executable, str(REPO / "bench" / "bench_detection.py"), "--rows", "200",
           "--backbone", "tiny", "--size", "32", "--epochs", "1", "--bootstrap", "50",
           "--workdir", str(work)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    result = report["result"]
    assert result["split"] == "test"

    with open(work / "split" / "split.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 200
    groups = {s: {r["group"] for r in table if r["split"] == s} for s in ("train", "val", "test")}
    assert not groups["test"] & (groups["train"] | groups["val"])
    test_rows = {r["path"]: int(r["label_id"]) for r in table if r["split"] == "test"}
    assert result["crops"] == len(test_rows) == report["data"]["splits"]["test"]["crops"]

    with open(work / "eval" / "predictions_crops.csv", newline="", encoding="utf-8") as fh:
        scored = list(csv.DictReader(fh))
    assert {r["path"] for r in scored} == set(test_rows)
    auc = roc_auc_score([test_rows[r["path"]] for r in scored], [float(r["score"]) for r in scored])
    assert result["auc"] == round(auc, 4)
    low, high = result["auc_ci95"]
    assert low <= result["auc"] <= high
    flip = report["result_tta_flip"]  # the same test crops, each scored with its mirror too
    assert flip["tta"] == "flip" and result["tta"] == "none" and flip["crops"] == result["crops"]
    with open(work / "eval-tta-flip" / "predictions_crops.csv", newline="",
              encoding="utf-8") as fh:
        flipped = list(csv.DictReader(fh))
    assert {r["path"] for r in flipped} == set(test_rows)
    assert flip["auc"] == round(roc_auc_score([test_rows[r["path"]] for r in flipped],
                                              [float(r["score"]) for r in flipped]), 4)
    assert [r["score"] for r in flipped] != [r["score"] for r in scored]
    assert report["training"]["config"]["epochs"] == 1
    assert report["training"]["crop"]["margin"] == 1.0
    assert report["machine"]["cores"] >= 1 and "load_avg_end" in report["machine"]

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads(again.stdout)
    assert second["training"]["reused_model"] is True
    assert second["result"]["auc"] == result["auc"]


@pytest.mark.slow
@pytest.mark.skipif(not (DFDC / "labels.csv").is_file(), reason="../shared/data is absent")
def test_learning_curve_mode_runs_one_held_out_evaluation_per_grid_point(tmp_path: Path) -> None:
    work = tmp_path / "curve"
    cmd = [sys.executable, str(REPO / "bench" / "bench_detection.py"), "--backbone", "tiny",
           "--size", "32", "--bootstrap", "20", "--workdir", str(work),
           "--curve-rows", "120,160", "--curve-epochs", "1", "--curve-augment", "none,full"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    points = json.loads(run.stdout)["curve"]
    assert [(p["augment"], p["rows"]) for p in points] == [
        ("none", 120), ("none", 160), ("full", 120), ("full", 160)]
    for p in points:
        meta = json.loads((work / f"rows{p['rows']}-aug{p['augment']}-ep1" / "model" /
                           "tiny_best.json").read_text())
        assert meta["train_config"]["augment"] == (0.0 if p["augment"] == "none" else 1.0)
        low, high = p["auc_ci95"]
        assert low <= p["auc"] <= high and p["test_crops"] > 0
        low, high = p["auc_ci95_tta_flip"]
        assert low <= p["auc_tta_flip"] <= high
        assert len(p["val_auc_per_epoch"]) == p["epochs_run"]

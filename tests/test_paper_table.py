"""The README's "Reproduce a paper table" path through the three stage scripts, on a Celeb-DF
layout of the shared clips with the real MTCNN detector: preset, official list, unsplit
cross-dataset scoring."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from app_support import save_tiny_model
from conftest import REPO, needs_shared
from layout_support import CELEBDF_TEST, build_celebdf, build_dfdcp

pytestmark = [needs_shared, pytest.mark.shared, pytest.mark.slow]


def _run(*args: object) -> str:
    done = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_celebdf_and_dfdc_preview_from_download_to_the_cross_dataset_table(tmp_path):
    celeb = build_celebdf(tmp_path / "Celeb-DF-v2")
    preview = build_dfdcp(tmp_path / "dfdc_preview")
    for root, pre in ((celeb, "pre_celeb"), (preview, "pre_dfdcp")):
        _run("preprocess.py", "--input", root, "--output", tmp_path / pre, "--detector",
             "mtcnn", "--preset", "dfb", "--max-frames", "6")
    records = [json.loads(x) for x in (tmp_path / "pre_celeb" / "manifest.jsonl").read_text()
               .splitlines()]
    assert {r["settings"]["preset"] for r in records} == {"dfb"}
    assert {r["dataset"] for r in records} == {"Celeb-DF-v2"}
    assert sum(r["status"] == "ok" for r in records) >= 7  # MTCNN finds the real faces

    out = _run("split.py", "--input", tmp_path / "pre_celeb", "--output", tmp_path / "split",
               "--protocol", celeb / "List_of_testing_videos.txt", "--workers", "1")
    assert "identities that appear in both test and train/val" in out
    report = json.loads((tmp_path / "split" / "split_report.json").read_text())
    assert report["official"]["test_listed"] == len(CELEBDF_TEST)

    model = save_tiny_model(tmp_path / "models" / "tiny_best.h5")
    _run("evaluate.py", "--model", model, "--data", tmp_path / "pre_celeb", "--data",
         tmp_path / "pre_dfdcp", "--output", tmp_path / "cross", "--bootstrap", "0")
    with open(tmp_path / "cross" / "cross_dataset.csv", newline="") as fh:
        rows = {r["dataset"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"Celeb-DF-v2", "DFDCP"}
    assert rows["Celeb-DF-v2"]["videos"] == str(len(CELEBDF_TEST))
    assert rows["DFDCP"]["protocol"].startswith("official test list dataset.json")
    assert "| tiny_best (tiny) |" in (tmp_path / "cross" / "cross_dataset.md").read_text()

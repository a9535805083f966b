"""The demo's own end-to-end run, on a smaller sample: every stage leaves its artifacts."""

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from dfpipe.core.manifest import read_manifests
from dfpipe.models.saving import read_metadata
from dfpipe.sample.demo import QUICK, run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    summary = run_demo(tmp_path / "demo", QUICK, app_check=True)
    out = tmp_path / "demo"
    with open(out / "dataset" / "labels.csv", newline="", encoding="utf-8") as fh:
        videos = {Path(row["path"]).stem: row["label"] for row in csv.DictReader(fh)}
    assert Counter(videos.values()) == {"real": QUICK.sources, "fake": QUICK.sources}
    # preprocess recorded every video of the sample once, with its label, and its crops exist
    records = read_manifests(out / "preprocessed")
    assert sorted(Path(r["relpath"]).stem for r in records) == sorted(videos)
    assert all(r["label"] == videos[Path(r["relpath"]).stem] for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) >= 0.9 * len(videos)
    assert all((out / "preprocessed" / c["file"]).is_file() for r in ok for c in r["crops"])
    # the split kept every identity group on one side and wrote crops for both classes
    with open(out / "preprocessed_split" / "split.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    sides = defaultdict(set)
    for row in rows:
        sides[row["group"]].add(row["split"])
        assert (out / "preprocessed_split" / row["path"]).is_file()
    assert all(len(s) == 1 for s in sides.values())
    for split in ("train", "val", "test"):
        assert {r["label"] for r in rows if r["split"] == split} == {"real", "fake"}
    test_videos = {r["video_id"] for r in rows if r["split"] == "test"}
    model = out / "models" / "tiny_best.h5"
    meta = read_metadata(model)
    assert meta["class_names"] == ["real", "fake"]
    assert meta["crop"]["detector"] == "mtcnn" and meta["crop"]["size"] == QUICK.crop_size
    results = out / "evaluation_results"
    for name in ("metrics.json", "metrics_report.txt", "predictions_crops.csv",
                 "predictions_videos.csv"):
        assert (results / name).is_file()
    pngs = list(results.glob("*.png"))
    assert len(pngs) >= 8 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["videos"]["count"] == len(test_videos) >= 4
    assert metrics["data"]["split"] == "test"
    # signal flows end to end: the demo model separates the sample's test videos
    assert metrics["videos"]["metrics"]["roc_auc"] >= 0.75
    app = summary["app"]
    assert app["verdict"] in ("FAKE", "REAL") and 0.0 <= app["score"] <= 1.0

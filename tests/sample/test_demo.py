"""The demo's own end-to-end run, on a smaller sample: every stage leaves its artifacts."""

import json

import pytest

from dfpipe.models.saving import read_metadata
from dfpipe.sample.demo import QUICK, run_demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    summary = run_demo(tmp_path / "demo", QUICK, app_check=True)
    out = tmp_path / "demo"
    assert (out / "dataset" / "labels.csv").is_file()
    assert (out / "preprocessed" / "manifest.jsonl").is_file()
    assert (out / "preprocessed_split" / "split.csv").is_file()
    for split in ("train", "val", "test"):
        for label in ("real", "fake"):
            assert any((out / "preprocessed_split" / split / label).rglob("*.jpg"))
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
    assert metrics["videos"]["count"] >= 4
    # signal flows end to end: the demo model separates the sample's test videos
    assert metrics["videos"]["metrics"]["roc_auc"] >= 0.75
    app = summary["app"]
    assert app["verdict"] in ("FAKE", "REAL") and 0.0 <= app["score"] <= 1.0

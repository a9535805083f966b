"""Official protocols from the datasets' own files, on small layouts of the shared clips."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import pytest
from conftest import needs_shared
from layout_support import (
    CELEBDF_TEST,
    build_celebdf,
    build_dfdc,
    build_dfdcp,
    build_ffpp,
    preprocess_fast,
)

from dfpipe.core.errors import PipelineError
from dfpipe.split.run import run_split

pytestmark = [needs_shared, pytest.mark.shared]


def _videos(out):
    """relpath-free view of split.csv: video id -> (split, label, group)."""
    with open(out / "split.csv", newline="", encoding="utf-8") as fh:
        return {r["video_id"]: (r["split"], r["label"], r["group"]) for r in csv.DictReader(fh)}


def _relpaths(pre):
    recs = [json.loads(line) for line in (pre / "manifest.jsonl").read_text().splitlines()]
    return {r["video_id"]: r["relpath"] for r in recs}


@pytest.fixture(scope="module")
def celebdf(tmp_path_factory):
    base = tmp_path_factory.mktemp("celebdf")
    root = build_celebdf(base / "Celeb-DF-v2")
    return root, preprocess_fast(root, base / "pre")


def test_celebdf_list_fixes_the_test_set_exactly_and_counts_the_overlap(celebdf, tmp_path):
    root, pre = celebdf
    out = tmp_path / "split"
    report = run_split(pre, out, protocol=root / "List_of_testing_videos.txt", workers=1)
    rel = _relpaths(pre)
    videos = _videos(out)
    test = {rel[v] for v, (split, _, _) in videos.items() if split == "test"}
    assert test == {line.split(" ", 1)[1] for line in CELEBDF_TEST}
    assert {s for s, _, _ in videos.values()} == {"train", "val", "test"}
    official = report["official"]
    assert official["test_in_manifest"] == 4 and official["test_listed_missing"] == 0
    # id1 has videos on both sides of the list: its test videos form id1@test
    assert official["identity_overlap"] == 1 and official["groups_cut"] == 1
    assert official["group_by"] == "target" and report["method"] == "protocol"
    where = defaultdict(set)
    for split, _, group in videos.values():
        where[group].add(split)
    assert all(len(s) == 1 for s in where.values())
    assert "appear in both test and train/val (the protocol's own overlap): 1" in (
        out / "split_report.txt").read_text()


def test_celebdf_root_as_protocol_and_a_wrong_label_is_refused(celebdf, tmp_path):
    root, pre = celebdf
    report = run_split(pre, tmp_path / "a", protocol=root, workers=1)
    assert report["official"]["test_in_manifest"] == 4
    wrong = tmp_path / "List_of_testing_videos.txt"
    wrong.write_text("0 YouTube-real/00000.mp4\n")
    with pytest.raises(PipelineError, match="labels YouTube-real/00000.mp4 fake"):
        run_split(pre, tmp_path / "b", protocol=wrong, workers=1)
    wrong.write_text("real YouTube-real/00000.mp4\n")
    with pytest.raises(PipelineError, match="line 1"):
        run_split(pre, tmp_path / "c", protocol=wrong, workers=1)


def test_dfdc_preview_set_field_is_honoured(tmp_path):
    root = build_dfdcp(tmp_path / "dfdc_preview")
    pre = preprocess_fast(root, tmp_path / "pre")
    out = tmp_path / "split"
    report = run_split(pre, out, protocol=root / "dataset.json", workers=1)
    rel = _relpaths(pre)
    test = {rel[v] for v, (split, _, _) in _videos(out).items() if split == "test"}
    index = json.loads((root / "dataset.json").read_text())
    assert test == {k for k, v in index.items() if v["set"] == "test"}
    assert report["official"]["identity_overlap"] == 0


def test_dfdc_metadata_without_test_videos_says_to_use_ratios(tmp_path):
    root = build_dfdc(tmp_path / "dfdc")
    pre = preprocess_fast(root, tmp_path / "pre")
    with pytest.raises(PipelineError, match="marks no video as test"):
        run_split(pre, tmp_path / "split", protocol=root / "dfdc_train_part_0/metadata.json")


def test_ffpp_json_pairs_with_method_and_compression_from_the_layout(tmp_path):
    root = build_ffpp(tmp_path / "FaceForensics++")
    pre = preprocess_fast(root, tmp_path / "pre")
    out = tmp_path / "split"
    report = run_split(pre, out, protocol=root, unlisted="drop", workers=1)  # finds splits/
    rel = _relpaths(pre)
    by_split = defaultdict(set)
    for v, (split, _, _) in _videos(out).items():
        by_split[split].add(rel[v].rsplit("/", 1)[1])
    assert by_split["test"] == {"634.mp4", "634_660.mp4", "750_743.mp4"}
    assert by_split["train"] == {"004.mp4", "004_982.mp4"}
    assert report["dropped_unlisted"]["videos"] == 2  # DFD is not in FF++'s json
    assert report["protocol"] == str(root / "splits")
    recs = [json.loads(x) for x in (pre / "manifest.jsonl").read_text().splitlines()]
    assert {r["method"] for r in recs if r["label"] == "fake"} == {
        "Deepfakes", "FaceSwap", "Face2Face", "NeuralTextures", "DeepFakeDetection"}

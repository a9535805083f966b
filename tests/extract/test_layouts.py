"""Datasets as downloaded: FF++ (with DFD), Celeb-DF, DFDC and its preview need no real/fake."""

from __future__ import annotations

import pytest
from conftest import needs_shared
from layout_support import (
    CentreDetector,
    build_celebdf,
    build_dfdc,
    build_dfdc_test,
    build_dfdcp,
    build_ffpp,
)

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import read_manifests
from dfpipe.extract import faces as facelib
from dfpipe.extract.layouts import detect_layout, list_videos
from dfpipe.extract.run import Settings, discover, run

pytestmark = [needs_shared, pytest.mark.shared]


def _by_rel(jobs):
    return {job.relpath: job for job in jobs}


def test_ffpp_root_gives_label_method_compression_and_dfd(tmp_path):
    root = build_ffpp(tmp_path / "FaceForensics++")
    jobs = _by_rel(discover(root))
    assert len(jobs) == 9  # masks/ are not videos to score
    real = jobs["original_sequences/youtube/c23/videos/519.mp4"]
    assert (real.label, real.dataset, real.method, real.compression) == (
        "real", "FaceForensics++", None, "c23")
    fake = jobs["manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"]
    assert (fake.label, fake.method, fake.compression) == ("fake", "Deepfakes", "c23")
    assert fake.group == real.group == "515" and fake.group_rule == "ffpp_name"
    dfd = jobs["manipulated_sequences/DeepFakeDetection/c23/videos/"
               "01_02__talking_angry__YVGY8LOK.mp4"]
    assert (dfd.label, dfd.dataset, dfd.method) == ("fake", "DFD", "DeepFakeDetection")
    actor = jobs["original_sequences/actors/c23/videos/01__talking_angry.mp4"]
    assert (actor.label, actor.dataset) == ("real", "DFD")


def test_celebdf_root_labels_by_folder_and_names_the_version(tmp_path):
    root = build_celebdf(tmp_path / "Celeb-DF-v2")
    jobs = _by_rel(discover(root))
    assert {j.label for r, j in jobs.items() if r.startswith("Celeb-synthesis")} == {"fake"}
    assert jobs["YouTube-real/00000.mp4"].label == "real"
    assert {j.dataset for j in jobs.values()} == {"Celeb-DF-v2"}
    assert jobs["Celeb-synthesis/id0_id1_0000.mp4"].identities == ("id0", "id1")


def test_dfdc_part_labels_and_groups_from_metadata(tmp_path):
    root = build_dfdc(tmp_path / "dfdc")
    jobs = _by_rel(discover(root))
    fake = jobs["dfdc_train_part_0/brtujopkby.mp4"]
    assert (fake.label, fake.dataset, fake.group_rule) == ("fake", "DFDC", "dfdc_metadata")
    assert "gnmmhlbzge" in fake.identities
    assert jobs["dfdc_train_part_0/lynaeydofd.mp4"].label == "real"


def test_dfdc_preview_index_labels_methods_and_joins_fakes_to_their_original(tmp_path):
    root = build_dfdcp(tmp_path / "dfdc_preview")
    jobs = _by_rel(discover(root))
    fake = jobs["method_B/1260311/1260311_1255229_B/1260311_1255229_B_002.mp4"]
    real = jobs["original_videos/1260311/1260311_B_002.mp4"]
    assert (fake.label, fake.method, fake.dataset) == ("fake", "method_B", "DFDCP")
    assert fake.group == real.group and "dfdcp_folder" in fake.group_rule


def test_dfdc_test_set_labels_csv_gives_the_labels(tmp_path):
    root = build_dfdc_test(tmp_path / "dfdc_test")
    assert detect_layout(root) == "dfdc_test"
    jobs = _by_rel(discover(root))  # its labels.csv is not read as a path,label,group file
    assert {r: j.label for r, j in jobs.items()} == {
        "lynaeydofd.mp4": "real", "brtujopkby.mp4": "fake", "widuwuoiur.mp4": "fake",
        "yhffcuhhjy.mp4": "fake"}
    assert {j.dataset for j in jobs.values()} == {"DFDC"}
    (root / "labels.csv").write_text("filename,label\nlynaeydofd.mp4,maybe\n")
    with pytest.raises(PipelineError, match="not 0 \\(real\\) or 1 \\(fake\\)"):
        discover(root)


def test_unknown_layout_and_bad_metadata_are_one_line_errors(tmp_path):
    (tmp_path / "x").mkdir()
    assert detect_layout(tmp_path / "x") is None
    with pytest.raises(PipelineError, match="no known dataset layout"):
        list_videos(tmp_path / "x")
    root = build_dfdc(tmp_path / "dfdc")
    (root / "dfdc_train_part_0" / "metadata.json").write_text(
        '{"lynaeydofd.mp4": {"label": "MAYBE"}}')
    with pytest.raises(PipelineError, match="not REAL or FAKE"):
        list_videos(root)


def test_manifest_records_dataset_method_and_compression(tmp_path, monkeypatch):
    monkeypatch.setitem(facelib.DETECTORS, "centre",
                        facelib.DetectorSpec(CentreDetector, {"min_confidence": 0.5}, 4))
    root = build_ffpp(tmp_path / "ffpp")
    out = tmp_path / "pre"
    run(root, out, Settings(detector="centre", frames=1, size=32), limit=3, max_frames=3)
    recs = read_manifests(out)
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)
    assert {(r["dataset"], r["method"], r["compression"]) for r in recs} == {
        ("DFD", "DeepFakeDetection", "c23"), ("FaceForensics++", "Deepfakes", "c23"),
        ("FaceForensics++", "Face2Face", "c23")}
    assert all(r["crops"][0]["file"].startswith("fake/") for r in recs)

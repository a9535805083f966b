"""Five keypoints: from the detectors through preprocess and split to the crops; found once
by MTCNN and cached where missing; a default layout, counted, where no face is found."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared, write_numbered_video
from split_support import write_split

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import read_manifests
from dfpipe.core.splittable import load_split
from dfpipe.extract import faces as facelib
from dfpipe.extract.run import Settings, run
from dfpipe.split.quality import QualityRules
from dfpipe.split.run import run_split
from dfpipe.train.sbi.landmarks import (
    CACHE_NAME,
    DEFAULT_LAYOUT,
    cache_location,
    detect_landmarks,
    read_cache,
    resolve_landmarks,
)

RETINA = {"right_eye": [30, 41], "left_eye": [60, 40], "nose": [45, 55],
          "mouth_right": [33, 71], "mouth_left": [58, 70]}  # named from the subject's side
MTCNN = {"left_eye": [30, 41], "right_eye": [60, 40], "nose": [45, 55],
         "mouth_left": [33, 71], "mouth_right": [58, 70]}  # named from the image's side


def test_both_detectors_keypoints_come_out_in_image_order() -> None:
    expected = ((30.0, 41.0), (60.0, 40.0), (45.0, 55.0), (33.0, 71.0), (58.0, 70.0))
    assert facelib.five_points(RETINA) == expected
    assert facelib.five_points(MTCNN) == expected
    assert facelib.five_points(None) is None
    assert facelib.five_points({"nose": [1, 2]}) is None


def test_crop_coordinates_match_the_crop() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    box = (150.0, 60.0, 230.0, 170.0)
    points = [(170.0, 95.0), (210.0, 96.0), (190.0, 120.0), (175.0, 145.0), (205.0, 144.0)]
    for x, y in points:
        cv2.circle(frame, (int(x), int(y)), 2, (255, 255, 255), -1)
    crop = facelib.crop_face(frame, box, margin=1.3, size=96)
    mapped = facelib.landmarks_in_crop(points, box, 1.3, 320, 240, 96)
    for x, y in mapped:
        assert 0 <= x < 96 and 0 <= y < 96
        patch = crop[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2]
        assert patch.max() > 100, (x, y)


class _Keypoints(facelib.Detector):
    """One face in the middle of each frame, with keypoints (tests the plumbing)."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence

    def detect(self, frames):
        out = []
        for f in frames:
            w, h = f.shape[1], f.shape[0]
            pts = tuple((w * fx, h * fy) for fx, fy in
                        ((0.4, 0.4), (0.5, 0.4), (0.45, 0.45), (0.41, 0.52), (0.49, 0.52)))
            out.append([facelib.Face((w * .3, h * .3, w * .6, h * .6), 0.99, pts)])
        return out


def test_detect_downscaled_maps_keypoints_back() -> None:
    frames = [np.zeros((1280, 960, 3), np.uint8)]
    face = facelib.detect_downscaled(_Keypoints(), frames, max_side=640)[0][0]
    np.testing.assert_allclose(face.landmarks[0], (0.4 * 960, 0.4 * 1280), atol=1)


def test_preprocess_and_split_carry_keypoints_to_the_crops(tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setitem(facelib.DETECTORS, "kp",
                        facelib.DetectorSpec(_Keypoints, {"min_confidence": 0.5}, 4))
    data = tmp_path / "data"
    for i in range(4):
        write_numbered_video(data / "real" / f"{i:03d}.mp4", 10)
        write_numbered_video(data / "fake" / f"{i:03d}_{i + 4:03d}.mp4", 10)
    run(data, tmp_path / "pre", Settings(detector="kp", every=5, size=48))
    record = read_manifests(tmp_path / "pre")[0]
    expected = facelib.landmarks_in_crop(
        _Keypoints().detect([np.zeros((48, 64, 3))])[0][0].landmarks,
        (64 * .3, 48 * .3, 64 * .6, 48 * .6), 1.3, 64, 48, 48)
    assert record["crops"][0]["landmarks"] == expected
    run_split(tmp_path / "pre", tmp_path / "split", workers=1,
              rules=QualityRules(min_face=0, min_sharpness=0, min_confidence=0))
    crops = [c for s in ("train", "val", "test") for c in load_split(tmp_path / "split", s)]
    assert crops and all(c.landmarks is not None for c in crops)
    np.testing.assert_allclose(crops[0].landmarks, expected)


def test_bad_landmark_cell_is_one_clear_error(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split")
    table = root / "split.csv"
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "landmarks"])
        writer.writeheader()
        writer.writerows({**r, "landmarks": "[[1, 2]]"} for r in rows)
    with pytest.raises(PipelineError, match="1 points, not 5"):
        load_split(root, "train")


class _Stub:
    """A detector stand-in: keypoints for crops whose first pixel is bright, none otherwise."""

    def __init__(self) -> None:
        self.seen = 0

    def detect(self, frames):
        self.seen += len(frames)
        out = []
        for f in frames:
            if f[0, 0].mean() > 127:
                h, w = f.shape[:2]
                pts = tuple((w * x, h * y) for x, y in ((.3, .3), (.7, .3), (.5, .5), (.35, .7),
                                                       (.65, .7)))
                out.append([facelib.Face((0, 0, w, h), 0.99, pts)])
            else:
                out.append([])
        return out


def test_missing_keypoints_are_detected_once_cached_and_defaulted(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 4}, "val": {"real": 1}})
    crops = load_split(root, "train")
    for i, crop in enumerate(crops):  # half the crops have a "face" (bright corner)
        image = cv2.imread(str(crop.path))
        image[:4, :4] = 255 if i % 2 == 0 else 0
        cv2.imwrite(str(crop.path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    cache = cache_location(root, tmp_path / "out")
    assert cache == root / CACHE_NAME
    stub = _Stub()
    found, report = resolve_landmarks(crops, root, cache, detector=stub)
    assert stub.seen >= len(crops)
    assert (report.detected, report.default, report.cached, report.from_table) == (8, 4, 0, 0)
    assert "median of 4" in report.default_layout
    np.testing.assert_allclose(found.points[0], [[21.6, 21.6], [50.4, 21.6], [36, 36],
                                                 [25.2, 50.4], [46.8, 50.4]], atol=0.06)
    assert found.relative[1] and not found.relative[0]
    np.testing.assert_allclose(found.in_pixels(1, 100, 100), found.points[0] / 72 * 100,
                               atol=0.1)
    entries = read_cache(cache)
    assert len(entries) == 8 and sum(e["landmarks"] is None for e in entries.values()) == 4
    again = _Stub()
    found2, report2 = resolve_landmarks(crops, root, cache, detector=again)
    assert again.seen == 0 and report2.cached == 8 and report2.default == 4
    np.testing.assert_array_equal(found.points, found2.points)
    image = cv2.imread(str(crops[0].path))  # a changed crop is detected again
    cv2.imwrite(str(crops[0].path), image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    third = _Stub()
    _, report3 = resolve_landmarks(crops, root, cache, detector=third)
    assert third.seen >= 1 and report3.detected == 1 and report3.cached == 7


def test_no_face_anywhere_uses_the_documented_default(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 1}, "val": {"real": 1}})
    crops = load_split(root, "train")
    for crop in crops:
        image = cv2.imread(str(crop.path))
        image[:4, :4] = 0
        cv2.imwrite(str(crop.path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    found, report = resolve_landmarks(crops, root, None, detector=_Stub())
    assert report.default == len(crops) and "DEFAULT_LAYOUT" in report.default_layout
    np.testing.assert_allclose(found.points[0], DEFAULT_LAYOUT)
    assert not (root / CACHE_NAME).exists()


def test_read_only_data_caches_in_the_output(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("dfpipe.train.sbi.landmarks.os.access", lambda path, mode: False)
    assert cache_location(tmp_path / "data", tmp_path / "out") == tmp_path / "out" / CACHE_NAME
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert read_cache(bad) == {}
    bad.write_text(json.dumps({"version": 99, "crops": {}}))
    assert read_cache(bad) == {}


class _OnlyWithBorder(_Stub):
    """Finds the face only once a border is added (as MTCNN on tight crops)."""

    def detect(self, frames):
        bright = [np.full_like(f, 255) for f in frames]  # the stub's "face" test passes
        return [found if f.shape[0] > 72 else []
                for f, found in zip(frames, super().detect(bright), strict=True)]


def test_a_missed_crop_is_retried_with_a_border_and_mapped_back() -> None:
    image = np.full((72, 72, 3), 200, np.uint8)
    (points,) = detect_landmarks([image], detector=_OnlyWithBorder())
    pad = round(0.25 * 72)
    side = 72 + 2 * pad
    assert points is not None
    np.testing.assert_allclose(points[0], (side * 0.3 - pad, side * 0.3 - pad), atol=1e-3)


@needs_shared
def test_mtcnn_finds_keypoints_on_real_dfdc_crops() -> None:
    paths = sorted((SHARED_DATA / "dfdc_faces" / "real").glob("*.jpg"))[:6]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    found = detect_landmarks(images)
    assert sum(p is not None for p in found) >= 5
    for points in (p for p in found if p is not None):
        eyes, nose, mouth = points[:2], points[2], points[3:]
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]
        assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
        assert (points >= -5).all() and (points <= 229).all()

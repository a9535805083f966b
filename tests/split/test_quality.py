"""Quality filter: each rule removes exactly the crops it should, and says how many."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfpipe.split.quality import (
    MIN_SHARPNESS,
    FaceCrop,
    QualityRules,
    filter_crops,
    image_sharpness,
    measure_sharpness,
)


def write_crop(path: Path, blurred: bool = False, seed: int = 0, size: int = 48) -> None:
    """A sharp crop is random noise; a blurred one is the same noise, heavily smoothed."""
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    if blurred:
        img = cv2.GaussianBlur(img, (0, 0), 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])


def crop(file: str, video: str = "v", frame: int = 0, face_size: float = 200,
         confidence: float = 0.99) -> FaceCrop:
    return FaceCrop(file=file, label="real", video_id=video, group=video, frame=frame, face=0,
                    face_size=face_size, confidence=confidence)


def test_sharpness_separates_sharp_from_blurred(tmp_path):
    write_crop(tmp_path / "sharp.jpg")
    write_crop(tmp_path / "blur.jpg", blurred=True)
    sharp, blur = image_sharpness(tmp_path / "sharp.jpg"), image_sharpness(tmp_path / "blur.jpg")
    assert sharp > 10 * MIN_SHARPNESS
    assert blur < MIN_SHARPNESS
    assert measure_sharpness([tmp_path / "sharp.jpg", tmp_path / "blur.jpg"], workers=2) == [
        sharp, blur]


def test_unreadable_image_has_no_sharpness(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert image_sharpness(tmp_path / "bad.jpg") is None
    assert image_sharpness(tmp_path / "missing.jpg") is None


def test_each_rule_removes_exactly_its_crops(tmp_path):
    for name, blurred in [("good", False), ("blur", True), ("small", False), ("unsure", False)]:
        write_crop(tmp_path / f"{name}.jpg", blurred=blurred)
    crops = [crop("good.jpg", face_size=120), crop("blur.jpg", face_size=120),
             crop("small.jpg", face_size=30), crop("unsure.jpg", confidence=0.5),
             crop("gone.jpg")]
    rules = QualityRules(min_face=40, min_sharpness=20, min_confidence=0.9)
    kept, removed = filter_crops(crops, tmp_path, rules, workers=1)
    assert [c.file for c in kept] == ["good.jpg"]
    assert kept[0].sharpness > 20
    assert removed == {"face_size": 1, "confidence": 1, "unreadable": 1, "sharpness": 1,
                       "max_per_video": 0}


def test_face_size_is_the_recorded_original_size_not_the_crop_size(tmp_path):
    write_crop(tmp_path / "a.jpg", size=224)
    write_crop(tmp_path / "b.jpg", size=16)
    crops = [crop("a.jpg", face_size=50), crop("b.jpg", face_size=300)]
    kept, removed = filter_crops(crops, tmp_path, QualityRules(min_face=100), workers=1)
    assert [c.file for c in kept] == ["b.jpg"]
    assert removed["face_size"] == 1


def test_thresholds_are_inclusive_lower_bounds(tmp_path):
    write_crop(tmp_path / "a.jpg")
    crops = [crop("a.jpg", face_size=40, confidence=0.9)]
    kept, _ = filter_crops(crops, tmp_path, QualityRules(min_face=40, min_confidence=0.9))
    assert len(kept) == 1


def test_max_per_video_keeps_crops_spread_over_time(tmp_path):
    write_crop(tmp_path / "x.jpg")
    crops = [crop("x.jpg", video="long", frame=f) for f in range(0, 100, 10)]
    crops += [crop("x.jpg", video="short", frame=f) for f in range(2)]
    kept, removed = filter_crops(crops, tmp_path, QualityRules(max_per_video=3), workers=1)
    frames = {v: [c.frame for c in kept if c.video_id == v] for v in ("long", "short")}
    assert frames["short"] == [0, 1]
    assert len(frames["long"]) == 3
    assert frames["long"][0] < 35 and 35 <= frames["long"][1] < 65 and frames["long"][2] >= 65
    assert removed["max_per_video"] == 7





def test_max_per_video_must_be_positive():
    with pytest.raises(ValueError):
        QualityRules(max_per_video=0)

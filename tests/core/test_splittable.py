"""Reading a split folder: from split.csv, or from the folder layout alone."""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
from split_support import write_split

from dfpipe.core.splittable import crop_settings, load_split, read_split_report


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))


def test_folder_video_ids_are_paths_below_the_label(tmp_path):
    """Two methods' 000_003 are two videos, not one merged video."""
    for method in ("Deepfakes", "FaceSwap"):
        for frame in (0, 5):
            _image(tmp_path / "test" / "fake" / method / "000_003" / f"{frame:06d}_00.jpg")
    _image(tmp_path / "test" / "real" / "000" / "000000_00.jpg")
    _image(tmp_path / "test" / "real" / "loose.jpg")
    crops = load_split(tmp_path, "test")
    videos = {c.video_id for c in crops}
    assert videos == {"Deepfakes/000_003", "FaceSwap/000_003", "000", "loose"}
    assert sum(c.video_id == "Deepfakes/000_003" for c in crops) == 2
    assert {c.group for c in crops} == videos
    assert sorted(c.frame for c in crops if c.video_id == "FaceSwap/000_003") == [0, 5]


def test_crop_settings_come_from_the_split_report(tmp_path: Path, caplog) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 1, "fake": 1}}, size=16)
    crop = crop_settings(read_split_report(root))
    assert crop["margin"] == 1.3 and crop["size"] == 16 and crop["detector"] == "mtcnn"
    assert crop["sampling"] == {"every": 10, "frames": 2, "faces": 1}
    (root / "split_report.json").write_text(json.dumps({"train": {}}))
    with caplog.at_level(logging.WARNING):
        assert crop_settings(read_split_report(root)) is None
    assert "no 'preprocess' settings" in caplog.text
    (root / "split_report.json").unlink()
    assert crop_settings(read_split_report(root)) is None

"""Reading a split folder: from split.csv, or from the folder layout alone."""

from pathlib import Path

import cv2
import numpy as np

from dfpipe.core.splittable import load_split


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

"""Per-method and per-compression rows: each method's fakes against all reals, failed at 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.evaluate.coverage import Uncovered
from dfpipe.evaluate.tables import measure, per_method_rows, render

# video -> (label, method, compression, video score); crops: two per video at score +- 0.01
VIDEOS = {
    "r1": (0, None, "c23", 0.1), "r2": (0, None, "c23", 0.2), "r3": (0, None, "c40", 0.3),
    "a1": (1, "Deepfakes", "c23", 0.9), "a2": (1, "Deepfakes", "c40", 0.8),
    "b1": (1, "FaceSwap", "c23", 0.15), "b2": (1, "FaceSwap", "c40", 0.25),
}
FAILED = Uncovered("b3", 1, "b3", "no_face")
INFO = {v: {"dataset": "FaceForensics++", "method": m, "compression": c}
        for v, (_, m, c, _) in VIDEOS.items()}
INFO["b3"] = {"dataset": "FaceForensics++", "method": "FaceSwap", "compression": "c40"}


def rows(uncovered=(FAILED,)):
    ids = list(VIDEOS)
    crop_ids = [v for v in ids for _ in range(2)]
    y_c = np.array([VIDEOS[v][0] for v in crop_ids])
    s_c = np.array([VIDEOS[v][3] + d for v in ids for d in (-0.01, 0.01)])
    return {(r["level"], r["name"]): r for r in per_method_rows(
        crop_ids, y_c, s_c, ids, np.array([VIDEOS[v][0] for v in ids]),
        np.array([VIDEOS[v][3] for v in ids]), list(uncovered), 0.5, INFO)}


def test_each_method_is_its_fakes_against_every_real():
    table = rows()
    assert set(table) == {("all", "all"), ("method", "Deepfakes"), ("method", "FaceSwap"),
                          ("compression", "c23"), ("compression", "c40")}
    deepfakes = table[("method", "Deepfakes")]
    assert (deepfakes["real_videos"], deepfakes["fake_videos"], deepfakes["failed"]) == (3, 2, 0)
    assert deepfakes["video_auc"] == 1.0 and deepfakes["frame_auc"] == 1.0
    assert deepfakes["eer"] == 0.0 and deepfakes["acc"] == 1.0
    # FaceSwap: 0.15 beats 1 real, 0.25 beats 2, the failed video at 0.5 beats all 3
    faceswap = table[("method", "FaceSwap")]
    assert (faceswap["fake_videos"], faceswap["failed"]) == (3, 1)
    assert faceswap["video_auc"] == pytest.approx(6 / 9)
    assert faceswap["acc"] == pytest.approx(4 / 6)  # 3 reals right, 0.5 >= 0.5 called fake
    c40 = table[("compression", "c40")]
    assert (c40["real_videos"], c40["fake_videos"], c40["failed"]) == (1, 3, 1)


def test_a_failed_video_is_never_dropped():
    with_failed, without = rows()[("all", "all")], rows(())[("all", "all")]
    assert with_failed["fake_videos"] == without["fake_videos"] + 1
    assert with_failed["failed"] == 1 and without["failed"] == 0
    assert with_failed["video_auc"] != without["video_auc"]
    assert with_failed["frame_auc"] == without["frame_auc"]  # no crop, no frame score


def test_one_class_leaves_auc_undefined_and_the_text_says_n_a():
    row = measure(np.array([1, 1]), np.array([0.2, 0.9]), np.array([1]), np.array([0.6]), [],
                  0.5)
    assert row["video_auc"] is None and row["frame_auc"] is None and row["acc"] == 1.0
    text = render([{"level": "all", "name": "all", **row}], "every video")
    assert "n/a" in text and "every video" in text

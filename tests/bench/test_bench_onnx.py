"""bench/bench_onnx.py: one small run prints the JSON the docs quote (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import REPO
from export_support import generated_crops


def _bench():
    spec = importlib.util.spec_from_file_location("bench_onnx", REPO / "bench" / "bench_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_small_run_reports_both_runtimes_and_the_ratios(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2
    from app_support import face_video, save_tiny_model

    faces = tmp_path / "faces"
    faces.mkdir()
    rows = ["path,label"]
    for i, crop in enumerate(generated_crops(96, 3)):
        cv2.imwrite(str(faces / f"{i}.png"), crop)
        rows.append(f"{i}.png,real")
    (faces / "labels.csv").write_text("\n".join(rows) + "\n")
    model = save_tiny_model(tmp_path / "tiny.h5")
    face_video(tmp_path / "videos" / "face.mp4", n_frames=4, size=(320, 240))
    code = _bench().main(["--model", str(model), "--faces", str(faces), "--crops", "3",
                          "--videos", str(tmp_path / "videos"), "--frames-per-video", "2",
                          "--rounds", "1", "--starts", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["conditions"]["crops"] == 3
    assert out["throughput"]["max_abs_score_difference"] < 1e-4
    assert out["start_to_ready"]["onnx"]["imports_tensorflow"] is False
    assert out["start_to_ready"]["tf"]["imports_tensorflow"] is True
    assert set(out["ratios"]) == {"onnx_over_tf_crops_per_s_median",
                                  "tf_over_onnx_start_s_median"}
    assert out["machine"]["load_average_before"] is not None
    mtcnn = out["mtcnn"]
    assert mtcnn["frames"] == 2 and mtcnn["faces_by_package"] >= 2
    assert mtcnn["frames_with_same_face_count"] == 2 and mtcnn["max_box_difference_px"] <= 2
    assert mtcnn["start_to_ready"]["onnx"]["imports_tensorflow"] is False

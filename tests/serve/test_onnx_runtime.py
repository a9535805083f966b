"""The ONNX path of the app: the same verdicts as the .h5, with TensorFlow unimportable."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from app_support import blank_video, crop_metadata, face_video, save_tiny_model
from conftest import REPO

BLOCK_TF = ("import runpy, sys\n"
            "for name in ('tensorflow', 'keras', 'tf_keras', 'mtcnn', 'retinaface'):\n"
            "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
            "sys.argv = ['app.py'] + sys.argv[1:]\n"
            "runpy.run_path('app.py', run_name='__main__')\n")


def predict(args: list[str], block_tf: bool) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", BLOCK_TF, *args] if block_tf else [
        sys.executable, "app.py", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_predict_on_onnx_without_tensorflow_gives_the_h5_verdicts(tmp_path: Path) -> None:
    from dfpipe.extract.mtcnn_export import export_mtcnn
    from dfpipe.models.export import export_model

    model = save_tiny_model(tmp_path / "tiny_best.h5", bias=0.3,
                            crop=crop_metadata("mtcnn", every=3))
    export_model(model, "onnx")
    mtcnn = export_mtcnn(tmp_path / "mtcnn_onnx")
    videos = tmp_path / "videos"
    face_video(videos / "face.mp4")
    blank_video(videos / "blank.mp4")
    h5 = predict(["predict", "--model", str(model), "--detector", "mtcnn", str(videos),
                  "--out", str(tmp_path / "h5.csv")], block_tf=False)
    assert h5.returncode == 0, h5.stderr[-2000:]
    onnx = predict(["predict", "--model", str(model), "--runtime", "onnx", "--mtcnn-onnx",
                    str(mtcnn), "--detector", "mtcnn", str(videos),
                    "--out", str(tmp_path / "onnx.csv")], block_tf=True)
    assert onnx.returncode == 0, onnx.stderr[-2000:]
    assert "Traceback" not in onnx.stderr
    want, got = rows(tmp_path / "h5.csv"), rows(tmp_path / "onnx.csv")
    assert set(want) == set(got) == {"face.mp4", "blank.mp4"}
    for name in want:
        assert got[name]["verdict"] == want[name]["verdict"]
        if want[name]["score"]:
            assert float(got[name]["score"]) == pytest.approx(float(want[name]["score"]),
                                                              abs=1e-4)
    assert want["face.mp4"]["verdict"] in ("FAKE", "REAL")
    assert want["blank.mp4"]["verdict"] == "NO FACE FOUND"


def test_the_onnx_runtime_refuses_a_detector_that_needs_tensorflow(tmp_path: Path) -> None:
    from dfpipe.core.errors import PipelineError
    from dfpipe.models.export import export_model
    from dfpipe.serve.analyzer import Analyzer

    model = save_tiny_model(tmp_path / "tiny_best.h5", crop=crop_metadata("retinaface"))
    export_model(model, "onnx")
    with pytest.raises(PipelineError, match="MTCNN only .*--detector mtcnn"):
        Analyzer.load(model, runtime="onnx")
    with pytest.raises(PipelineError, match="no exported MTCNN"):
        Analyzer.load(model, runtime="onnx", detector="mtcnn", mtcnn_onnx=tmp_path / "none")


@pytest.mark.slow
def test_evaluate_scores_an_onnx_model_without_tensorflow_as_the_h5(tmp_path: Path) -> None:
    import json

    from split_support import write_split

    from dfpipe.models.export import export_model

    root = write_split(tmp_path / "split", {"test": {"real": 3, "fake": 3}}, size=32)
    model = save_tiny_model(tmp_path / "tiny_best.h5", bias=0.1)
    onnx_path = export_model(model, "onnx").path
    block = BLOCK_TF.replace("app.py", "evaluate.py")
    common = ["--data", str(root), "--split", "test", "--bootstrap", "0"]
    tf_run = subprocess.run([sys.executable, "evaluate.py", "--model", str(model), *common,
                             "--output", str(tmp_path / "tf")], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert tf_run.returncode == 0, tf_run.stderr[-2000:]
    onnx_run = subprocess.run([sys.executable, "-c", block, "--model", str(onnx_path), *common,
                               "--output", str(tmp_path / "onnx")], capture_output=True,
                              text=True, cwd=REPO, timeout=600)
    assert onnx_run.returncode == 0, onnx_run.stderr[-2000:]
    tf_m = json.loads((tmp_path / "tf" / "metrics.json").read_text())
    onnx_m = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    assert onnx_m["model"]["runtime"] == "onnx" and tf_m["model"]["runtime"] == "tf"
    assert onnx_m["crops"]["metrics"]["roc_auc"] == pytest.approx(
        tf_m["crops"]["metrics"]["roc_auc"], abs=1e-6)
    assert onnx_m["crops"]["confusion_matrix"] == tf_m["crops"]["confusion_matrix"]

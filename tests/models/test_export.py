"""Export: the ONNX, SavedModel and TFLite files score as the .h5 does, carry its metadata
and the SHA-256 of the .h5, and are float32 graphs even from a mixed-precision model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, needs_shared
from export_support import (
    exported_tiny,
    generated_crops,
    real_crops,
    save_model_file,
    xception_model,
)

from dfpipe.core.errors import PipelineError
from dfpipe.core.onnxformat import file_sha256
from dfpipe.models.export import export_model, export_sidecar, exported_path, float32_model
from dfpipe.models.onnxrun import OnnxClassifier
from dfpipe.models.saving import read_metadata
from dfpipe.scoring.crops import score_crops

keras = pytest.importorskip("keras")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return exported_tiny(tmp_path_factory.mktemp("tiny"))


def h5_scores(h5: Path, crops: list[np.ndarray]) -> np.ndarray:
    from dfpipe.models.saving import load_classifier

    model, _ = load_classifier(h5)
    return score_crops(model, crops)


def assert_same_scores(h5: Path, onnx: Path, crops: list[np.ndarray]) -> None:
    want = h5_scores(h5, crops)
    got = score_crops(OnnxClassifier(onnx), crops)
    assert want.std() > 1e-3, "scores too alike to show anything"
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("size", [64, 100, 224, 40])
def test_onnx_scores_equal_h5_on_generated_crops(tiny: tuple[Path, Path], size: int) -> None:
    """Sizes below, at and above the model's 64 px: the antialiased resize is in the graph."""
    h5, onnx = tiny
    assert_same_scores(h5, onnx, generated_crops(size))


@needs_shared
def test_onnx_scores_equal_h5_on_real_crops_tiny(tiny: tuple[Path, Path]) -> None:
    h5, onnx = tiny
    assert_same_scores(h5, onnx, real_crops(16))


@pytest.mark.slow
@needs_shared
def test_onnx_scores_equal_h5_on_real_crops_xception(tmp_path: Path) -> None:
    crops = real_crops(12)
    h5 = save_model_file(xception_model(96, crops), tmp_path / "xception.h5", 96, "xception")
    result = export_model(h5, "onnx")
    assert_same_scores(h5, result.path, crops + generated_crops(96, 3))


def test_sidecar_holds_h5_metadata_sha256_and_format(tiny: tuple[Path, Path]) -> None:
    h5, onnx = tiny
    assert onnx == exported_path(h5, "onnx") == h5.with_suffix(".onnx")
    meta = json.loads(export_sidecar(onnx).read_text())
    source = read_metadata(h5)
    assert {k: meta[k] for k in source} == source
    assert meta["format"] == "onnx"
    assert meta["exported_from"] == "tiny.h5"
    assert meta["exported_from_sha256"] == file_sha256(h5)
    assert meta["export"]["dtype"] == "float32"
    assert h5.with_suffix(".json").is_file(), "the .h5's own sidecar is left alone"


def test_mixed_precision_model_exports_a_float32_graph(tmp_path: Path) -> None:
    import onnx
    from app_support import tiny_model

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = tiny_model(0.2)
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.get_layer("tiny").get_layer("tiny_conv0").compute_dtype == "bfloat16"
    h5 = save_model_file(mixed, tmp_path / "mixed.h5", 64, "tiny")
    result = export_model(h5, "onnx")
    graph = onnx.load(str(result.path)).graph
    low = {onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT16}
    casts = [a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert not low & set(casts)
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer
               if t.data_type in low | {onnx.TensorProto.FLOAT})
    crops = generated_crops(64)
    want = float32_model(mixed).predict_on_batch(np.stack(crops).astype("float32")).ravel()
    got = score_crops(OnnxClassifier(result.path), crops)
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_float32_model_keeps_a_float32_model_as_it_is(tiny: tuple[Path, Path]) -> None:
    from dfpipe.models.saving import load_classifier

    model, _ = load_classifier(tiny[0])
    assert float32_model(model) is model


def test_savedmodel_and_tflite_score_as_the_h5(tmp_path: Path) -> None:
    import tensorflow as tf

    h5, _ = exported_tiny(tmp_path)
    crops = generated_crops(64)
    want = h5_scores(h5, crops)
    saved = export_model(h5, "savedmodel")
    assert saved.path == tmp_path / "tiny.savedmodel" and saved.path.is_dir()
    loaded = tf.saved_model.load(str(saved.path))
    got = loaded.serve(np.stack(crops).astype("float32"))
    np.testing.assert_allclose(np.asarray(got).ravel(), want, atol=TOLERANCE, rtol=0)
    lite = export_model(h5, "tflite")
    meta = json.loads(lite.sidecar.read_text())
    assert meta["format"] == "tflite" and meta["export"]["input_size"] == 64
    interpreter = tf.lite.Interpreter(model_path=str(lite.path))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], (len(crops), 64, 64, 3))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], np.stack(crops).astype("float32"))
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).ravel()
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_bad_format_and_missing_model_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="unknown export format 'pt'.*onnx"):
        export_model(tmp_path / "x.h5", "pt")
    with pytest.raises(PipelineError, match="model file not found"):
        export_model(tmp_path / "x.h5", "onnx")


def test_export_script_prints_a_summary_and_errors_in_one_line(tmp_path: Path) -> None:
    from app_support import save_tiny_model

    h5 = save_tiny_model(tmp_path / "m.h5")
    run = subprocess.run([sys.executable, str(REPO / "export.py"), "--model", str(h5)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"exported {h5} as onnx to {tmp_path / 'm.onnx'}")
    bad = subprocess.run([sys.executable, str(REPO / "export.py"), "--model",
                          str(tmp_path / "none.h5")], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: model file not found")
    assert "Traceback" not in bad.stderr

"""ONNX Runtime scoring: load_any picks the runtime, scores as the .h5 does through
score_crops, never imports TensorFlow on the .onnx path and refuses a stale export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from export_support import exported_tiny, generated_crops

from dfpipe.core.errors import PipelineError
from dfpipe.models.export import export_sidecar
from dfpipe.models.onnxrun import OnnxClassifier, is_onnx_model, load_any
from dfpipe.scoring.crops import score_crops


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return exported_tiny(tmp_path_factory.mktemp("tiny"))


def copy_of(tiny: tuple[Path, Path], folder: Path) -> tuple[Path, Path]:
    """The .h5, its sidecar, the .onnx and its sidecar copied to ``folder``."""
    h5, onnx = tiny
    for path in (h5, h5.with_suffix(".json"), onnx, export_sidecar(onnx)):
        shutil.copy2(path, folder / path.name)
    return folder / h5.name, folder / onnx.name


def test_load_any_onnx_scores_as_the_h5(tiny: tuple[Path, Path]) -> None:
    h5, onnx = tiny
    crops = generated_crops(80)
    tf_model, tf_meta = load_any(h5)
    onnx_model, onnx_meta = load_any(onnx)
    assert isinstance(onnx_model, OnnxClassifier) and is_onnx_model(onnx_model)
    assert not is_onnx_model(tf_model)
    assert onnx_meta["threshold"] == tf_meta["threshold"] and onnx_meta["format"] == "onnx"
    assert onnx_model.input_shape == (None, None, None, 3)
    want = score_crops(tf_model, crops, batch_size=4)
    np.testing.assert_allclose(score_crops(onnx_model, crops, batch_size=4), want, atol=1e-4)
    batch = np.stack(crops).astype(np.float32)
    np.testing.assert_allclose(onnx_model.predict(batch, batch_size=4).ravel(), want, atol=1e-4)


def test_runtime_onnx_takes_the_export_beside_the_h5(tiny: tuple[Path, Path]) -> None:
    h5, onnx = tiny
    model, meta = load_any(h5, runtime="onnx")
    assert isinstance(model, OnnxClassifier) and model.path == onnx
    assert meta["exported_from"] == h5.name


def test_runtime_onnx_without_an_export_says_how_to_make_one(tmp_path: Path,
                                                              tiny: tuple[Path, Path]) -> None:
    h5 = tmp_path / "alone.h5"
    shutil.copy2(tiny[0], h5)
    with pytest.raises(PipelineError, match=r"no alone.onnx beside .*python export.py --model"):
        load_any(h5, runtime="onnx")
    with pytest.raises(PipelineError, match="the TF runtime needs the .h5"):
        load_any(tiny[1], runtime="tf")
    with pytest.raises(PipelineError, match="unknown runtime 'torch'"):
        load_any(h5, runtime="torch")


def test_stale_onnx_beside_a_retrained_h5_is_refused(tmp_path: Path,
                                                     tiny: tuple[Path, Path]) -> None:
    from app_support import save_tiny_model

    h5, onnx = copy_of(tiny, tmp_path)
    load_any(onnx)
    save_tiny_model(h5, bias=-1.0)  # retrained: same name, other weights
    with pytest.raises(PipelineError) as err:
        load_any(onnx)
    message = str(err.value)
    assert "\n" not in message
    assert f"{onnx} is stale" in message and "tiny.h5" in message
    assert f"re-export it: python export.py --model {h5} --format onnx" in message
    with pytest.raises(PipelineError, match="is stale"):
        load_any(h5, runtime="onnx")


def test_export_shipped_without_its_h5_is_used(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    h5, onnx = copy_of(tiny, tmp_path)
    h5.unlink()
    model, _ = load_any(onnx)
    assert score_crops(model, generated_crops(64, 2)).shape == (2,)


def test_missing_or_broken_sidecar_and_file_are_one_line_errors(
        tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    h5, onnx = copy_of(tiny, tmp_path)
    export_sidecar(onnx).unlink()
    with pytest.raises(PipelineError, match="no metadata file tiny.onnx.json .*export it again"):
        load_any(onnx)
    export_sidecar(onnx).write_text(json.dumps({"class_names": ["fake", "real"]}))
    with pytest.raises(PipelineError, match="class order"):
        load_any(onnx)
    with pytest.raises(PipelineError, match="model file not found"):
        load_any(tmp_path / "other.onnx")
    copy_of(tiny, tmp_path)
    onnx.write_bytes(b"not onnx")
    with pytest.raises(PipelineError, match="cannot load ONNX model .*export it again"):
        load_any(onnx)


def test_onnx_path_never_imports_tensorflow(tiny: tuple[Path, Path]) -> None:
    """In a fresh process: load, score, then no tensorflow (nor keras) module is loaded."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from dfpipe.models.onnxrun import load_any
        from dfpipe.scoring.crops import score_crops
        model, meta = load_any({str(tiny[1])!r})
        scores = score_crops(model, [np.full((70, 70, 3), v, np.uint8) for v in (0, 128, 255)])
        assert scores.shape == (3,), scores
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print("loaded:", loaded[:5])
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "loaded: []"

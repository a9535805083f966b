"""Inference precision (dfpipe.models.precision): auto picks bfloat16 only where it is native
and the runtime is TF, and the bfloat16 copy keeps the weights and a float32 output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import needs_shared
from export_support import exported_tiny, real_crops, xception_model

from dfpipe.core.errors import PipelineError
from dfpipe.models.onnxrun import is_onnx_model, load_any
from dfpipe.models.precision import resolve_precision, to_bfloat16
from dfpipe.models.registry import OUTPUT_NAME, RESIZE_NAME
from dfpipe.scoring.crops import score_crops


@pytest.mark.parametrize("requested,onnx,native,expected", [
    (None, False, True, "float32"),  # the default is the reference precision
    ("auto", False, True, "bfloat16"),
    ("auto", False, False, "float32"),  # emulated bf16 is slower than float32
    ("auto", True, True, "float32"),  # ONNX Runtime's CPU kernels are float32
    ("bfloat16", False, False, "bfloat16"),
    ("FLOAT32", True, True, "float32"),
])
def test_resolve_precision(requested: str | None, onnx: bool, native: bool,
                           expected: str) -> None:
    assert resolve_precision(requested, onnx, cpu_has_bf16=native) == expected


def test_bfloat16_on_onnx_and_unknown_values_are_refused() -> None:
    with pytest.raises(PipelineError, match="TensorFlow only.*--runtime tf"):
        resolve_precision("bfloat16", onnx=True, cpu_has_bf16=True)
    with pytest.raises(PipelineError, match="unknown --precision 'half'"):
        resolve_precision("half", onnx=False)


@needs_shared
def test_bfloat16_copy_scores_real_crops_as_float32_does() -> None:
    crops = real_crops(24)
    model = xception_model(71, crops)
    fast = to_bfloat16(model)
    backbone = fast.get_layer("xception")
    assert fast.get_layer(OUTPUT_NAME).dtype_policy.name == "float32"
    assert fast.get_layer(RESIZE_NAME).dtype_policy.name == "float32"
    convs = [layer for layer in backbone.layers if "conv" in layer.name]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(v.dtype == "float32" for v in fast.weights)
    want = score_crops(model, crops, batch_size=8)
    got = score_crops(fast, crops, batch_size=8)
    assert want.std() > 0.1  # scores spread over (0, 1): a difference would show
    assert np.max(np.abs(got - want)) < 0.05
    assert np.corrcoef(got, want)[0, 1] > 0.98
    assert len(np.unique(np.round(got, 6))) == len(crops)  # full-resolution output


def test_load_any_records_the_precision(tmp_path: Path) -> None:
    h5, onnx = exported_tiny(tmp_path)
    model, meta = load_any(h5, precision="bfloat16")
    assert meta["inference_precision"] == "bfloat16"
    assert model.get_layer("tiny").get_layer("tiny_conv0").compute_dtype == "bfloat16"
    _, meta = load_any(h5)
    assert meta["inference_precision"] == "float32"
    model, meta = load_any(onnx, precision="auto")
    assert is_onnx_model(model) and meta["inference_precision"] == "float32"

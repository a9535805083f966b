"""Inference precision: score crops in float32, or in bfloat16 where the CPU computes it natively.

A saved model is float32. On a CPU with AVX-512 BF16 or AMX, running the backbone's
convolutions in bfloat16 is the cheapest large speed-up on offer (docs/benchmarks.md); the
resize, the pixel scaling and the P(fake) output layer stay float32, as in a mixed-precision
training run, so scores keep their full resolution and differ from float32's only by the
backbone's rounding. ``auto`` picks bfloat16 only where it is native (elsewhere it is emulated
and slower) and only under TensorFlow (ONNX Runtime's CPU kernels here are float32).
"""

from __future__ import annotations

import logging
from typing import Any

from dfpipe.core.cpu import cpu_supports_bf16
from dfpipe.core.errors import PipelineError
from dfpipe.models.registry import OUTPUT_NAME, RESIZE_NAME, SCALE_NAME
from dfpipe.models.saving import finalize_normalization

log = logging.getLogger(__name__)

INFERENCE_PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "auto")
DEFAULT_INFERENCE_PRECISION = "float32"
FLOAT32_LAYERS = frozenset({RESIZE_NAME, SCALE_NAME, OUTPUT_NAME})


def add_precision_option(parser: Any) -> None:
    """``--precision`` for the scripts that score crops (evaluate.py, app.py), one help text."""
    parser.add_argument(
        "--precision", choices=INFERENCE_PRECISIONS, default=None,
        help="float32, or bfloat16: the backbone computes in bfloat16 (TF runtime; resize, "
             "scaling and output stay float32; faster on a CPU with AVX-512 BF16 or AMX, scores "
             "move by the rounding, see docs/benchmarks.md); auto: bfloat16 where the CPU has "
             "it natively and the runtime is TF; None: float32 (the figures the operating "
             "point was chosen with)")


def resolve_precision(requested: str | None, onnx: bool, cpu_has_bf16: bool | None = None) -> str:
    """float32 or bfloat16 for ``requested`` (None: the default, float32) on this runtime.

    ``auto``: bfloat16 under TensorFlow on a CPU with native bf16, else float32; an explicit
    bfloat16 on ONNX Runtime is refused in one line with the way out."""
    value = (requested or DEFAULT_INFERENCE_PRECISION).strip().lower()
    if value not in INFERENCE_PRECISIONS:
        raise PipelineError(f"unknown --precision '{requested}': use one of "
                            f"{', '.join(INFERENCE_PRECISIONS)}")
    if value == "auto":
        native = cpu_supports_bf16() if cpu_has_bf16 is None else cpu_has_bf16
        return "bfloat16" if native and not onnx else "float32"
    if value == "bfloat16" and onnx:
        raise PipelineError("--precision bfloat16 runs under TensorFlow only: serve the .h5 "
                            "(--runtime tf), or use --precision float32 with ONNX Runtime")
    return value


def to_bfloat16(model: Any) -> Any:
    """A copy of a float32 classifier whose layers compute in bfloat16 (variables stay
    float32), except the resize, the scaling and the output layer; same weights."""
    import keras

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if (layer.name not in FLOAT32_LAYERS and "dtype" in config
                and not isinstance(layer, keras.layers.InputLayer)):
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    finalize_normalization(copy)
    return copy


def apply_precision(model: Any, precision: str) -> Any:
    """The model to score with at ``precision`` (a resolved value: float32 or bfloat16)."""
    if precision == "float32":
        return model
    if precision != "bfloat16":
        raise PipelineError(f"unknown precision '{precision}': use float32 or bfloat16")
    log.info("scoring in bfloat16 (float32 resize, scaling and output)")
    return to_bfloat16(model)

"""Write a trained .h5 detector as ONNX, a TF SavedModel or TFLite, beside it, same metadata.

Why: an ONNX Runtime session starts in well under a second and needs no TensorFlow, which the
app and evaluate pay 6-13 s to import and load. The exported graph is always float32 (a model
kept in a mixed-precision policy is rebuilt in float32 first), takes the same raw RGB crops
(0..255, any square size) and gives the same P(fake). Its JSON sidecar is the .h5's metadata
plus where it came from (``exported_from``, ``exported_from_sha256``), so a stale export beside
a retrained .h5 can be refused (:func:`dfpipe.models.onnxrun.load_any`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.onnxformat import ONNX_IR_VERSION, ONNX_OPSET, file_sha256

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx", "savedmodel", "tflite")
SUFFIXES = {"onnx": ".onnx", "savedmodel": ".savedmodel", "tflite": ".tflite"}
INPUT_NAME = "rgb"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    sidecar: Path
    format: str
    source_sha256: str
    seconds: float


def exported_path(model_path: Path, fmt: str) -> Path:
    """Where ``fmt`` is written beside ``model_path`` (``x.h5`` -> ``x.onnx``)."""
    _check_format(fmt)
    return Path(model_path).with_suffix(SUFFIXES[fmt])


def export_sidecar(path: Path) -> Path:
    """The exported model's metadata file: its name plus ``.json`` (``x.onnx.json``).

    Not ``x.json``: that name is the .h5's own sidecar, beside it in the same folder.
    """
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_model(model_path: Path, fmt: str = "onnx", output: Path | None = None
                 ) -> ExportResult:
    """Export ``model_path`` (.h5 written by train.py) as ``fmt``; the sidecar is written last,
    so a half-written export has no metadata and is never taken for a good one."""
    from dfpipe.models.saving import load_classifier

    _check_format(fmt)
    model_path = Path(model_path)
    start = time.perf_counter()
    model, meta = load_classifier(model_path)
    model = float32_model(model)
    target = Path(output) if output is not None else exported_path(model_path, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar = export_sidecar(target)
    sidecar.unlink(missing_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    _remove(tmp)
    try:
        details = _WRITERS[fmt](model, tmp)
    except Exception as exc:  # noqa: BLE001 - a converter failure is one line for the user
        _remove(tmp)
        if isinstance(exc, PipelineError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"cannot export {model_path} as {fmt}: {first}") from None
    _remove(target)
    os.replace(tmp, target)
    sha = file_sha256(model_path)
    out_meta = {**meta, "format": fmt, "exported_from": model_path.name,
                "exported_from_sha256": sha,
                "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "export": {**details, "dtype": "float32"}}
    tmp_side = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp_side.write_text(json.dumps(out_meta, indent=2, sort_keys=True, default=str) + "\n",
                        encoding="utf-8")
    os.replace(tmp_side, sidecar)
    seconds = time.perf_counter() - start
    log.info("exported %s -> %s (%s, %.1f s)", model_path, target, fmt, seconds)
    return ExportResult(target, sidecar, fmt, sha, seconds)


def float32_model(model: Any) -> Any:
    """``model`` itself when every layer computes in float32, else a float32 rebuild of it
    with the same weights (mixed-precision variables are float32 already, so nothing is lost)."""
    import keras

    if all(_policy_name(layer) == "float32" for layer in _all_layers(model)):
        return model
    config = _float32_config(keras.saving.serialize_keras_object(model))
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    log.info("%s: rebuilt in float32 for export", model.name)
    return clone


def _all_layers(model: Any) -> list[Any]:
    found, todo = [], [model]
    while todo:
        layer = todo.pop()
        found.append(layer)
        todo.extend(getattr(layer, "layers", []))
    return found


def _policy_name(layer: Any) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return str(getattr(policy, "name", "float32"))


def _float32_config(node: Any) -> Any:
    """A serialized model with every dtype policy replaced by float32."""
    if isinstance(node, dict):
        if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return {**node, "config": {**node.get("config", {}), "name": "float32"}}
        return {key: _float32_config(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_float32_config(value) for value in node]
    return node


def _write_onnx(model: Any, path: Path) -> dict[str, Any]:
    """tf2onnx on the model's inference function, one input ``rgb`` of any batch and size.

    Keras' antialiased Resizing becomes TF's ScaleAndTranslate, which tf2onnx cannot convert:
    it is mapped to ONNX Resize (linear, antialias, half-pixel, weights outside the image
    dropped), which is the same filter (pixels agree within 0.006 of 255).
    """
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    signature = [tf.TensorSpec((None, None, None, 3), tf.float32, name=INPUT_NAME)]
    function = tf.function(lambda rgb: model(rgb, training=False), input_signature=signature)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()  # tf2onnx 1.17 still uses names numpy 2 removed
        proto, _ = tf2onnx.convert.from_function(
            function, signature, opset=ONNX_OPSET,
            custom_op_handlers={"ScaleAndTranslate": (_resize_handler, [])})
    proto.ir_version = ONNX_IR_VERSION
    path.write_bytes(proto.SerializeToString())
    return {"opset": ONNX_OPSET, "tf2onnx": tf2onnx.__version__, "input": INPUT_NAME,
            "output": proto.graph.output[0].name, "keras": _keras_version()}


def _resize_handler(ctx: Any, node: Any, name: str, args: list[Any]) -> None:
    """TF ScaleAndTranslate (antialiased bilinear, no translation) -> ONNX Resize-18."""
    from onnx import TensorProto

    x, size = node.input[0], node.input[1]
    sizes = ctx.make_node("Cast", [size], attr={"to": TensorProto.INT64}).output[0]
    node.type = "Resize"
    ctx.replace_inputs(node, [x, "", "", sizes])
    node.set_attr("mode", "linear")
    node.set_attr("antialias", 1)
    node.set_attr("exclude_outside", 1)
    node.set_attr("axes", [1, 2])
    node.set_attr("coordinate_transformation_mode", "half_pixel")


def _write_savedmodel(model: Any, path: Path) -> dict[str, Any]:
    _write_archive(model, path, None)
    return {"endpoint": "serve", "input": INPUT_NAME, "keras": _keras_version()}


def _write_archive(model: Any, path: Path, size: int | None) -> None:
    """A SavedModel whose ``serve`` endpoint calls the model with ``training=False``.

    Not ``model.export``: its endpoint ran batch norm on the batch's own statistics for a
    loaded .h5 (scores 0.90 where the model gives 0.76).
    """
    import keras
    import tensorflow as tf

    signature = [tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda rgb: model(rgb, training=False),
                         input_signature=signature)
    archive.write_out(str(path), verbose=False)


def _write_tflite(model: Any, path: Path) -> dict[str, Any]:
    """TFLite at the model's own input size: TFLite has no antialiased resize (TF's
    ScaleAndTranslate is neither a builtin nor a flex op), so the caller resizes crops to
    ``export.input_size`` first and the graph starts after the Resizing layer."""
    import tempfile

    import tensorflow as tf

    fixed = _without_resize(model)
    size = int(fixed.input_shape[1])
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        _write_archive(fixed, Path(tmp) / "saved", size)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved"))
        path.write_bytes(converter.convert())
    return {"input": INPUT_NAME, "input_size": size, "resize_in_graph": False,
            "keras": _keras_version()}


def _without_resize(model: Any) -> Any:
    """The classifier from its Resizing layer's output on: a fixed-size input, same weights."""
    import keras

    from dfpipe.models.registry import RESIZE_NAME

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not layers or layers[0].name != RESIZE_NAME:
        raise PipelineError(f"{model.name}: no '{RESIZE_NAME}' layer first; TFLite export "
                            "needs a classifier built by train.py")
    size = layers[0].get_config()["height"]
    inputs = keras.Input((size, size, 3), name=INPUT_NAME)
    x = inputs
    for layer in layers[1:]:
        x = layer(x, training=False) if isinstance(layer, keras.layers.Dropout) else layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_fixed")


_WRITERS = {"onnx": _write_onnx, "savedmodel": _write_savedmodel, "tflite": _write_tflite}


def _keras_version() -> str:
    import keras

    return str(keras.__version__)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise PipelineError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

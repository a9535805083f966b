"""Score crops with an exported .onnx under ONNX Runtime, never importing TensorFlow.

Why: importing TensorFlow and loading the .h5 costs seconds before the first verdict; an ONNX
Runtime session starts in well under one. :class:`OnnxClassifier` answers the calls
:func:`dfpipe.scoring.crops.score_crops` makes of a Keras model (``predict_on_batch``,
``input_shape``), so evaluate and the app score through either without a second code path.
:func:`load_any` picks the runtime from the file (or ``runtime``) and refuses an export whose
recorded SHA-256 no longer matches the .h5 beside it (a retrained model, a stale export).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.core.onnxformat import file_sha256
from dfpipe.models.export import export_sidecar, exported_path

log = logging.getLogger(__name__)

RUNTIMES: tuple[str, ...] = ("auto", "tf", "onnx")


class OnnxClassifier:
    """An exported detector under ONNX Runtime (CPU): raw RGB crops 0..255 -> P(fake)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PipelineError(f"cannot load ONNX model {path}: {first} "
                                "(export it again with export.py)") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise PipelineError(f"{path}: expected one input and one output, got "
                                f"{len(inputs)} and {len(outputs)} (export it with export.py)")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape)
        if len(self.input_shape) != 4 or self.input_shape[-1] != 3:
            raise PipelineError(f"{path}: takes {self.input_shape}; expected RGB images")
        if self.output_shape[-1] != 1:
            raise PipelineError(f"{path}: gives {self.output_shape[-1]} outputs per crop; "
                                "expected one P(fake)")

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """P(fake) for one batch, shape (N, 1), as Keras' ``predict_on_batch`` gives it."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict(self, x: np.ndarray, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Keras-like ``predict``: batches of ``batch_size``, concatenated."""
        del verbose
        x = np.asarray(x)
        parts = [self.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r})"


def read_export_metadata(path: Path) -> dict[str, Any]:
    """The sidecar of an exported model (``x.onnx.json``), checked; PipelineError if absent."""
    path = Path(path)
    side = export_sidecar(path)
    if not path.exists():
        raise PipelineError(f"model file not found: {path} (export one with "
                            "python export.py --model MODEL.h5 --format onnx)")
    if not side.is_file():
        raise PipelineError(f"{path} has no metadata file {side.name} beside it (an interrupted "
                            "export?): export it again with export.py")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{side}: not valid JSON ({exc}); export the model again") from None
    if list(meta.get("class_names", [])) != list(CLASS_NAMES):
        raise PipelineError(f"{side}: class order {meta.get('class_names')} is not "
                            f"{list(CLASS_NAMES)}")
    return meta


def check_fresh(path: Path, meta: dict[str, Any]) -> None:
    """Refuse an export whose source .h5, still beside it, has changed since (retrained).

    With no .h5 beside it (an export shipped alone) there is nothing to compare: it is used.
    """
    source_name = meta.get("exported_from")
    recorded = meta.get("exported_from_sha256")
    if not source_name or not recorded:
        raise PipelineError(f"{path}: its metadata does not say which .h5 it came from; "
                            "export it again with export.py")
    source = Path(path).with_name(str(source_name))
    if not source.is_file():
        log.info("%s: its source %s is not beside it; using the export as it is", path,
                 source.name)
        return
    if file_sha256(source) != recorded:
        raise PipelineError(
            f"{path} is stale: it was exported from an earlier {source.name} (SHA-256 differs); "
            f"re-export it: python export.py --model {source} --format {meta.get('format')}")


def load_onnx(path: Path, threads: int | None = None) -> tuple[OnnxClassifier, dict[str, Any]]:
    """An exported .onnx and its metadata, after the staleness check."""
    meta = read_export_metadata(path)
    check_fresh(path, meta)
    return OnnxClassifier(path, threads), meta


def load_any(path: Path | str, runtime: str = "auto", threads: int | None = None,
             precision: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, metadata) for ``score_crops``, from a .h5 (TensorFlow) or .onnx (ONNX Runtime).

    ``runtime``: ``auto`` follows the suffix; ``onnx`` with a .h5 takes the .onnx exported
    beside it; ``tf`` needs the .h5. The .onnx path imports no TensorFlow. ``precision``
    (:mod:`dfpipe.models.precision`): float32 (None), bfloat16 or auto; the one used is
    recorded in the returned metadata under ``inference_precision``.
    """
    from dfpipe.models.precision import resolve_precision

    if runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime '{runtime}': use one of {', '.join(RUNTIMES)}")
    path = Path(path)
    is_onnx = path.suffix.lower() == ".onnx"
    if runtime == "onnx" and not is_onnx:
        onnx_path = exported_path(path, "onnx")
        if not onnx_path.is_file():
            raise PipelineError(f"no {onnx_path.name} beside {path}: export it first: "
                                f"python export.py --model {path} --format onnx")
        path, is_onnx = onnx_path, True
    if runtime == "tf" and is_onnx:
        raise PipelineError(f"{path} is an ONNX export; the TF runtime needs the .h5 it came from")
    chosen = resolve_precision(precision, is_onnx)
    if is_onnx:
        model, meta = load_onnx(path, threads)
        return model, {**meta, "inference_precision": chosen}
    from dfpipe.models.precision import apply_precision
    from dfpipe.models.saving import load_classifier

    model, meta = load_classifier(path)
    return apply_precision(model, chosen), {**meta, "inference_precision": chosen}


def is_onnx_model(model: Any) -> bool:
    """Whether ``model`` runs under ONNX Runtime (no gradients: Grad-CAM needs the .h5)."""
    return isinstance(model, OnnxClassifier)


"""Save and load a trained detector together with its metadata.

The metadata (class order, input size, preprocessing, crop settings, threshold, config)
lives inside the .h5 as the root attribute ``dfpipe_metadata`` and in a JSON file beside
it, so a model can never be used with the wrong class order or crop settings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import METADATA_ATTR, metadata_sidecar
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.models.registry import BACKBONES, RESIZE_NAME

log = logging.getLogger(__name__)


def save_model(model: Any, path: Path, metadata: dict[str, Any]) -> None:
    """Write ``model`` and ``metadata`` atomically (.h5 or .keras)."""
    import h5py

    path = Path(path)
    if list(metadata.get("class_names", [])) != list(CLASS_NAMES):
        raise ValueError(f"metadata class_names must be {list(CLASS_NAMES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    text = json.dumps(metadata, indent=2, sort_keys=True, default=str)
    if path.suffix == ".h5":
        with h5py.File(tmp, "a") as fh:
            fh.attrs[METADATA_ATTR] = text
    os.replace(tmp, path)
    side = metadata_sidecar(path)
    tmp_side = side.with_name(f".{side.name}.tmp")
    tmp_side.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp_side, side)


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a saved model, checked; PipelineError if absent or wrong."""
    import h5py

    path = Path(path)
    if path.is_dir():
        raise PipelineError(f"{path} is a folder: give the model file (.h5) written by train.py")
    if not path.is_file():
        raise PipelineError(f"model file not found: {path} (train one with train.py)")
    text = None
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get(METADATA_ATTR)
                text = raw.decode() if isinstance(raw, bytes) else raw
        except OSError as exc:  # a truncated copy still passes is_hdf5
            raise PipelineError(f"cannot read the model file {path} ({str(exc).splitlines()[0]}"
                                "): it is truncated or corrupt; copy it again or retrain") from None
    elif path.suffix == ".h5":
        raise PipelineError(f"not a valid HDF5 model file: {path} (corrupt or truncated?)")
    if text is None and metadata_sidecar(path).is_file():
        text = metadata_sidecar(path).read_text(encoding="utf-8")
    if text is None:
        raise PipelineError(
            f"{path} has no dfpipe metadata (class order, input size, threshold): "
            "use a model written by train.py")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: model metadata is not valid JSON ({exc})") from None
    if list(meta.get("class_names", [])) != list(CLASS_NAMES):
        raise PipelineError(
            f"{path}: class order {meta.get('class_names')} is not {list(CLASS_NAMES)}")
    return meta


def load_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """Load a detector and its checked metadata; PipelineError with one line on failure."""
    import keras

    meta = read_metadata(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file
        raise PipelineError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from None
    finalize_normalization(model)
    return model, meta


def finalize_normalization(model: Any) -> None:
    """Make Normalization layers use the mean/variance the file holds.

    Keras' HDF5 loader restores a nested model's Normalization weights without recomputing the
    tensors the layer divides by, so EfficientNet would scale pixels with mean 0, variance 1.
    """
    import keras

    layers = [model]
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        if isinstance(layer, keras.layers.Normalization) and layer.built:
            layer.finalize_state()


def load_classifier(path: Path) -> tuple[Any, dict[str, Any]]:
    """Load a saved classifier and check it against its metadata (PipelineError on mismatch)."""
    model, meta = load_model(path)
    check_classifier(model, meta, path)
    return model, meta


def check_classifier(model: Any, meta: dict[str, Any], path: Path | str = "model") -> None:
    """What can be checked: one P(fake) output, RGB input, and the resize size in metadata."""
    out = tuple(model.output_shape)
    if out[-1] != 1:
        raise PipelineError(f"{path}: the model gives {out[-1]} outputs; expected one P(fake)")
    if tuple(model.input_shape)[-1] != 3:
        raise PipelineError(f"{path}: the model takes {model.input_shape}; expected RGB images")
    names = {layer.name: layer for layer in model.layers}
    resize = names.get(RESIZE_NAME)
    size = meta.get("input_size")
    if resize is not None and size is not None:
        got = resize.get_config()
        if (got["height"], got["width"]) != (size, size):
            raise PipelineError(f"{path}: resizes to {got['height']}x{got['width']} but its "
                                f"metadata says input_size {size}")
    backbone = meta.get("backbone")
    if backbone is not None and str(backbone).lower() not in BACKBONES:
        log.warning("%s: backbone '%s' is not in this version's registry", path, backbone)

"""Backbone registry and the detector built around a backbone.

Each backbone's defaults (input size, minimum size, pixel scaling, learning rates, dropout,
how much to unfreeze) live beside its constructor, the way timm keeps a model's config with
the model. The detector takes raw RGB crops (float, 0..255, any square size): resizing and
the backbone's pixel scaling are layers inside it, so evaluation and the app cannot drift
from what training saw.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PipelineError

log = logging.getLogger(__name__)

INPUT_NAME = "rgb"
RESIZE_NAME = "resize"
SCALE_NAME = "scale"
OUTPUT_NAME = "p_fake"
# Keras' ImageNet EfficientNet files store the per-channel std (not the variance) in the
# Normalization layer and Keras adds a compensating Rescaling only when it downloads them.
IMAGENET_STDDEV_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A feature extractor and its defaults; ``scaling`` is None when it scales pixels itself."""

    name: str
    constructor: Callable[..., Any]
    input_size: int
    min_size: int
    scaling: tuple[float, float] | None
    preprocessing: str
    head_lr: float
    fine_tune_lr: float
    dropout: float
    unfreeze: int
    has_imagenet: bool = True


def _keras_app(attr: str) -> Callable[..., Any]:
    def build(**kwargs: Any) -> Any:
        import keras

        return getattr(keras.applications, attr)(**kwargs)

    return build


def tiny_backbone(include_top: bool = False, weights: str | None = None,
                  input_shape: tuple[int, int, int] = (64, 64, 3), pooling: str = "avg",
                  name: str = "tiny") -> Any:
    """Four conv blocks with batch norm: builds in well under a second, for tests/demos.

    Full-resolution first convolution and max-pooling (not strided convolutions) keep the
    fine texture that blending artefacts live in; batch-norm momentum 0.9 lets the moving
    statistics settle within the few hundred steps a demo trains for.
    """
    import keras
    from keras import layers

    if include_top or pooling != "avg" or weights not in (None, "none"):
        raise ValueError("tiny backbone: only include_top=False, pooling='avg', weights=None")
    inputs = keras.Input(input_shape, name=f"{name}_input")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"{name}_pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    return keras.Model(inputs, x, name=name)


MINUS_ONE_TO_ONE = (1.0 / 127.5, -1.0)
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("xception", _keras_app("Xception"), input_size=299, min_size=71,
             scaling=MINUS_ONE_TO_ONE, preprocessing="x / 127.5 - 1 (to [-1, 1])",
             head_lr=1e-3, fine_tune_lr=1e-4, dropout=0.5, unfreeze=36),
    Backbone("efficientnetb0", _keras_app("EfficientNetB0"), input_size=224, min_size=32,
             scaling=None, preprocessing="inside the backbone (Rescaling 1/255 + Normalization)",
             head_lr=1e-3, fine_tune_lr=1e-5, dropout=0.2, unfreeze=20),
    Backbone("efficientnetb4", _keras_app("EfficientNetB4"), input_size=380, min_size=32,
             scaling=None, preprocessing="inside the backbone (Rescaling 1/255 + Normalization)",
             head_lr=1e-3, fine_tune_lr=1e-5, dropout=0.4, unfreeze=30),
    Backbone("tiny", tiny_backbone, input_size=64, min_size=16,
             scaling=MINUS_ONE_TO_ONE, preprocessing="x / 127.5 - 1 (to [-1, 1])",
             head_lr=1e-3, fine_tune_lr=1e-3, dropout=0.2, unfreeze=-1, has_imagenet=False),
)}


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``name`` (case-insensitive); PipelineError listing the choices."""
    key = str(name).strip().lower()
    if key not in BACKBONES:
        raise PipelineError(f"unknown backbone '{name}': choose one of {', '.join(BACKBONES)}")
    return BACKBONES[key]


def check_size(spec: Backbone, size: int) -> None:
    """Refuse an input size the backbone cannot take, in one line with the way out."""
    if size < spec.min_size:
        raise PipelineError(f"--size {size} is below {spec.name}'s minimum of {spec.min_size} "
                            f"pixels: use --size {spec.min_size} or more "
                            f"(default {spec.input_size})")


def build_backbone(spec: Backbone, size: int, weights: str | None) -> Any:
    """The backbone at ``size`` with ``weights`` ('imagenet', None or a local file)."""
    check_size(spec, size)
    kwargs = {"include_top": False, "input_shape": (size, size, 3), "pooling": "avg"}
    if weights == "imagenet":
        if not spec.has_imagenet:
            raise PipelineError(f"backbone '{spec.name}' has no ImageNet weights: use "
                                "--weights none or --weights PATH")
        try:
            return spec.constructor(weights="imagenet", **kwargs)
        except Exception as exc:  # noqa: BLE001 - any download/cache failure reads the same
            raise PipelineError(
                f"cannot get ImageNet weights for {spec.name} ({_first_line(exc)}): pass "
                "--weights PATH to a local .h5 of the backbone's weights, or --weights none"
            ) from None
    model = spec.constructor(weights=None, **kwargs)
    if weights is not None:
        _load_weights(model, spec, Path(weights))
    return model


def _load_weights(model: Any, spec: Backbone, path: Path) -> None:
    if not path.is_file():
        raise PipelineError(f"weights file not found: {path} (--weights takes imagenet, none "
                            "or the path of a local .h5 of the backbone's weights)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:  # noqa: BLE001 - a wrong file fails in many ways
            raise PipelineError(f"cannot load {path} into backbone {spec.name}: "
                                f"{_first_line(exc)}") from None
    # Keras only warns when parts of a file match no layer and keep random weights.
    partial = [w for w in caught if "freshly-initialized" in str(w.message)]
    if partial:
        raise PipelineError(f"cannot load {path} into backbone {spec.name}: the file does not "
                            f"match its layers ({_first_line(partial[0].message)})")
    _fix_imagenet_normalization(model)
    log.info("loaded backbone weights from %s", path)


def _fix_imagenet_normalization(model: Any) -> None:
    """Make a Keras ImageNet EfficientNet file loaded from a path scale pixels as ImageNet did.

    Those files hold the std where Normalization expects the variance; Keras compensates with
    an extra Rescaling layer only on download. Squaring the stored value does the same.
    """
    from keras import layers

    for layer in model.layers[:4]:
        if not isinstance(layer, layers.Normalization) or not hasattr(layer, "adapt_variance"):
            continue
        var = [float(v) for v in layer.adapt_variance.numpy().ravel()]
        if len(var) == 3 and all(math.isclose(a, b, rel_tol=1e-3)
                                 for a, b in zip(var, IMAGENET_STDDEV_RGB, strict=True)):
            layer.adapt_variance.assign([v * v for v in var])
            layer.finalize_state()
            log.info("%s: ImageNet std stored as variance; squared it as Keras does on download",
                     model.name)


def build_detector(spec: Backbone, size: int, weights: str | None, dropout: float) -> Any:
    """Raw RGB (0..255, any square size) -> resize -> scaling -> backbone -> P(fake).

    Resizing and scaling run in float32 whatever the precision policy; the output layer is
    float32 too, so a mixed-precision model still gives full-precision probabilities.
    """
    import keras
    from keras import layers

    backbone = build_backbone(spec, size, weights)
    inputs = keras.Input((None, None, 3), name=INPUT_NAME)
    x = layers.Resizing(size, size, antialias=True, dtype="float32", name=RESIZE_NAME)(inputs)
    if spec.scaling is not None:
        scale, offset = spec.scaling
        x = layers.Rescaling(scale, offset=offset, dtype="float32", name=SCALE_NAME)(x)
    x = backbone(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_detector")


def backbone_of(model: Any) -> Any:
    """The backbone sub-model inside a detector built by :func:`build_detector`."""
    import keras

    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"expected one backbone inside {model.name}, found {len(inner)}")
    return inner[0]


def freeze_backbone(model: Any) -> None:
    """Phase 1: only the head learns."""
    backbone_of(model).trainable = False


def unfreeze_top(model: Any, count: int, freeze_batchnorm: bool = True) -> int:
    """Phase 2: make the top ``count`` backbone layers trainable (-1: all); return how many.

    Batch-norm layers stay frozen, which in Keras 3 also keeps them in inference mode (a
    ``training=False`` call argument is overridden by ``fit``), so their ImageNet statistics
    are not overwritten by small fine-tuning batches.
    """
    from keras import layers

    backbone = backbone_of(model)
    backbone.trainable = True
    total = len(backbone.layers)
    start = 0 if count < 0 else max(0, total - count)
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start
        if freeze_batchnorm and isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return total - start


def load_detector(path: Path) -> tuple[Any, dict[str, Any]]:
    """Load a saved detector and check it against its metadata (PipelineError on mismatch)."""
    from .modelio import load_model

    model, meta = load_model(path)
    check_detector(model, meta, path)
    return model, meta


def check_detector(model: Any, meta: dict[str, Any], path: Path | str = "model") -> None:
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


def _first_line(exc: BaseException | Warning | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

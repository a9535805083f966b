"""ImageNet weights for a backbone: fetched the way keras.applications does, loaded by path
into the same architecture as a copy rebuilt without them, checked to match."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError, first_line
from dfpipe.models.registry import IMAGENET_STDDEV_RGB, Backbone

log = logging.getLogger(__name__)


def imagenet_weights_file(spec: Backbone) -> Path:
    """The local copy of the backbone's Keras ImageNet file, fetched into Keras' cache
    (``~/.keras/models``) the way keras.applications does; PipelineError when unavailable."""
    import keras

    cfg = spec.model
    if not cfg.has_imagenet:
        raise PipelineError(f"backbone '{spec.name}' has no ImageNet weights: use "
                            "--weights none or --weights PATH")
    try:
        return Path(keras.utils.get_file(cfg.imagenet_file, cfg.imagenet_url,
                                         cache_subdir="models", file_hash=cfg.imagenet_hash))
    except Exception as exc:  # noqa: BLE001 - any download/cache failure reads the same
        raise PipelineError(
            f"cannot get ImageNet weights for {spec.name} ({first_line(exc)}): pass "
            "--weights PATH to a local .h5 of the backbone's weights, or --weights none"
        ) from None


def load_backbone_weights(model: Any, spec: Backbone, path: Path) -> None:
    if not path.is_file():
        raise PipelineError(f"weights file not found: {path} (--weights takes imagenet, none "
                            "or the path of a local .h5 of the backbone's weights)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:  # noqa: BLE001 - a wrong file fails in many ways
            raise PipelineError(f"cannot load {path} into backbone {spec.name}: "
                                f"{first_line(exc)}") from None
    # Keras only warns when parts of a file match no layer and keep random weights.
    partial = [w for w in caught if "freshly-initialized" in str(w.message)]
    if partial:
        raise PipelineError(f"cannot load {path} into backbone {spec.name}: the file does not "
                            f"match its layers ({first_line(partial[0].message)})")
    fix_imagenet_normalization(model)
    log.info("loaded backbone weights from %s", path)


def fix_imagenet_normalization(model: Any) -> None:
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

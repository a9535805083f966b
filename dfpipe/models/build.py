"""The classifier around a backbone: raw RGB crops in, P(fake) out, with resizing and the
backbone's pixel scaling as layers inside, so evaluation and the app cannot drift from what
training saw; and the layer freezing of the two training phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dfpipe.models.imagenet import imagenet_weights_file, load_backbone_weights
from dfpipe.models.registry import (
    INPUT_NAME,
    OUTPUT_NAME,
    RESIZE_NAME,
    SCALE_NAME,
    Backbone,
    check_size,
)


def build_backbone(spec: Backbone, size: int, weights: str | None) -> Any:
    """The backbone at ``size`` with ``weights`` ('imagenet', None or a local file).

    The architecture is the same whatever the weights: ImageNet files are loaded like a local
    file (Keras' own ImageNet path would add a layer to EfficientNet, so a copy rebuilt without
    weights would scale pixels differently from the model trained).
    """
    check_size(spec, size)
    path = imagenet_weights_file(spec) if weights == "imagenet" else weights
    model = spec.constructor(weights=None, include_top=False, input_shape=(size, size, 3),
                             pooling="avg")
    if path is not None:
        load_backbone_weights(model, spec, Path(path))
    return model


def build_classifier(spec: Backbone, size: int, weights: str | None, dropout: float) -> Any:
    """Raw RGB (0..255, any square size) -> resize -> scaling -> backbone -> P(fake).

    Resizing and scaling run in float32 whatever the precision policy; the output layer is
    float32 too, so a mixed-precision model still gives full-precision probabilities.
    """
    import keras
    from keras import layers

    backbone = build_backbone(spec, size, weights)
    inputs = keras.Input((None, None, 3), name=INPUT_NAME)
    x = layers.Resizing(size, size, antialias=True, dtype="float32", name=RESIZE_NAME)(inputs)
    if not spec.model.scaling_in_backbone:
        scale, offset = _rescaling(spec.model.mean, spec.model.std)
        x = layers.Rescaling(scale, offset=offset, dtype="float32", name=SCALE_NAME)(x)
    x = backbone(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_classifier")


def _rescaling(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Any, Any]:
    """(x - mean) / std as Rescaling's scale and offset: scalars when the channels agree."""
    scale = [1.0 / s for s in std]
    offset = [-m / s for m, s in zip(mean, std, strict=True)]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        return scale[0], offset[0]
    return scale, offset


def backbone_of(model: Any) -> Any:
    """The backbone sub-model inside a classifier built by :func:`build_classifier`."""
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

    With ``freeze_batchnorm`` batch-norm layers stay frozen, which in Keras 3 also keeps them
    in inference mode (a ``training=False`` call argument is overridden by ``fit``), so their
    ImageNet statistics are not overwritten by small fine-tuning batches.
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


def batchnorm_trainable(per_replica_batch: int, freeze_bn: bool, pretrained: bool) -> bool:
    """Whether phase 2 trains batch norm: always from scratch; from pretrained weights only
    when each replica's batch (what batch norm's statistics see) holds 16 images or more and
    ``--freeze-bn`` is not given."""
    if not pretrained:
        return True
    return not freeze_bn and per_replica_batch >= 16

"""The backbone registry: what each backbone is, and how it trains by default.

Each registry entry keeps what a backbone *is* (:class:`ModelConfig`: input size, pixel
mean/std as data, where its ImageNet file comes from) apart from how it is *trained* by default
(:class:`TrainDefaults`: learning rates, unfreeze depth, dropout, weight decay, head epochs,
schedule), the way timm keeps ``pretrained_cfg`` apart from training arguments; the saved
metadata holds both. The classifier takes raw RGB crops (float, 0..255, any square size):
resizing and the backbone's pixel scaling are layers inside it, so evaluation and the app
cannot drift from what training saw. A backbone's architecture never depends on where its
weights come from, so a copy rebuilt for saving is the model that was trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dfpipe.core.errors import PipelineError

log = logging.getLogger(__name__)

INPUT_NAME = "rgb"
RESIZE_NAME = "resize"
SCALE_NAME = "scale"
OUTPUT_NAME = "p_fake"
SCHEDULES: tuple[str, ...] = ("cosine", "plateau")
# Keras' ImageNet EfficientNet files store the per-channel std (not the variance) in the
# Normalization layer and Keras adds a compensating Rescaling only when it downloads them.
IMAGENET_STDDEV_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGENET_MEAN_RGB: tuple[float, float, float] = (0.485, 0.456, 0.406)
KERAS_WEIGHTS = "https://storage.googleapis.com/"


@dataclass(frozen=True)
class ModelConfig:
    """What a backbone is: the input it expects and its pretrained file (timm's pretrained_cfg).

    ``mean``/``std`` are in pixel units (0..255): the model computes (x - mean) / std. With
    ``scaling_in_backbone`` the Keras backbone does that itself (EfficientNet's Rescaling +
    Normalization); otherwise a Rescaling layer of the classifier does.
    """

    input_size: int
    min_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scaling_in_backbone: bool = False
    imagenet_file: str | None = None
    imagenet_url: str | None = None
    imagenet_hash: str | None = None

    @property
    def has_imagenet(self) -> bool:
        return self.imagenet_file is not None

    def describe_scaling(self) -> str:
        """The pixel scaling in words, for the metadata."""
        where = "inside the backbone" if self.scaling_in_backbone else "a Rescaling layer"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return f"(x - [{mean}]) / [{std}] per RGB channel, {where}"


@dataclass(frozen=True)
class TrainDefaults:
    """How a backbone is trained unless told otherwise (train.py's unset options).

    ``head_epochs`` train the new head with the backbone frozen at ``head_lr``; then the top
    ``unfreeze`` backbone layers (-1: all) train at ``lr`` with AdamW (``weight_decay``,
    decoupled as in Keras and torch.optim.AdamW: each step shrinks weights by lr x wd) and the
    ``schedule`` (cosine decay over the phase, or cuts on a validation plateau).
    ``freeze_bn`` keeps batch norm frozen whatever the batch size. ``augment`` is the
    training augmentation's strength in [0, 1] (1: the published recipe's).
    """

    head_epochs: int
    epochs: int
    head_lr: float
    lr: float
    unfreeze: int
    dropout: float
    weight_decay: float
    schedule: str
    freeze_bn: bool = False
    augment: float = 1.0


@dataclass(frozen=True)
class Backbone:
    """A registry entry: a constructor, what the model is and how it is trained by default."""

    name: str
    constructor: Callable[..., Any]
    model: ModelConfig
    training: TrainDefaults

    @property
    def input_size(self) -> int:
        return self.model.input_size

    @property
    def min_size(self) -> int:
        return self.model.min_size

    @property
    def has_imagenet(self) -> bool:
        return self.model.has_imagenet


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


HALF_RANGE = (127.5, 127.5, 127.5)  # (x - 127.5) / 127.5: pixels to [-1, 1]
IMAGENET_PIXELS = {"mean": tuple(255.0 * m for m in IMAGENET_MEAN_RGB),
                   "std": tuple(255.0 * s for s in IMAGENET_STDDEV_RGB)}


def _efficientnet(variant: str, size: int, dropout: float, file_hash: str) -> Backbone:
    name = f"efficientnet{variant}"
    return Backbone(
        name, _keras_app(f"EfficientNet{variant.upper()}"),
        ModelConfig(input_size=size, min_size=32, **IMAGENET_PIXELS, scaling_in_backbone=True,
                    imagenet_file=f"{name}_notop.h5",
                    imagenet_url=f"{KERAS_WEIGHTS}keras-applications/{name}_notop.h5",
                    imagenet_hash=file_hash),
        # Keras' EfficientNet fine-tuning guide: top 20-30 layers, a low rate, batch norm
        # frozen (its per-replica batches at 224-380 px are small).
        TrainDefaults(head_epochs=2, epochs=20, head_lr=1e-3, lr=1e-5, unfreeze=20 if
                      variant == "b0" else 30, dropout=dropout, weight_decay=1e-4,
                      schedule="plateau", freeze_bn=True))


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone(
        "xception", _keras_app("Xception"),
        ModelConfig(input_size=299, min_size=71, mean=HALF_RANGE, std=HALF_RANGE,
                    imagenet_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    imagenet_url=f"{KERAS_WEIGHTS}tensorflow/keras-applications/xception/"
                                 "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    imagenet_hash="b0042744bf5b25fce3cb969f33bebb97"),
        # DeepfakeBench's Xception (lr 2e-4, whole network, 10 epochs) after FaceForensics++'
        # head warm-up. DeepfakeBench's torch Adam weight_decay=5e-4 is an L2 term that Adam
        # rescales per weight; Keras' AdamW decay is decoupled (lr x wd per step), where 5e-4
        # would do nothing (1e-7 per step), so we use torch.optim.AdamW's default 1e-2.
        TrainDefaults(head_epochs=2, epochs=10, head_lr=1e-3, lr=2e-4, unfreeze=-1,
                      dropout=0.5, weight_decay=1e-2, schedule="cosine")),
    _efficientnet("b0", 224, 0.2, "50bc09e76180e00e4465e1a485ddc09d"),
    _efficientnet("b4", 380, 0.4, "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    Backbone(
        "tiny", tiny_backbone, ModelConfig(input_size=96, min_size=16, mean=HALF_RANGE,
                                           std=HALF_RANGE),
        # Chosen from the learning curve on the shared DFDC crops (docs/benchmarks.md, issue
        # 24): from scratch at CPU scale the net underfits, so no augmentation, 96 px and 20
        # epochs on a cosine decay: test AUC 0.818 on 24,000 crops in about 15 minutes on 2
        # cores, against 0.777 at 10 epochs and lower with light augmentation.
        TrainDefaults(head_epochs=1, epochs=20, head_lr=1e-3, lr=1e-3, unfreeze=-1,
                      dropout=0.2, weight_decay=1e-4, schedule="cosine", augment=0.0)),
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

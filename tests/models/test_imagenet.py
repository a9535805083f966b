"""Backbone weights from a local file or ImageNet: loaded into the same layers, or one line."""

from pathlib import Path

import keras
import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models.build import (
    build_backbone,
)
from dfpipe.models.registry import BACKBONES, IMAGENET_STDDEV_RGB, get_backbone

TINY = get_backbone("tiny")


def test_weights_path_loads_a_local_file(tmp_path: Path) -> None:
    source = build_backbone(TINY, 32, None)
    for var in source.weights:
        var.assign(np.random.default_rng(1).normal(size=var.shape).astype("float32"))
    new_format = tmp_path / "tiny.weights.h5"
    legacy = tmp_path / "tiny_full.h5"  # the layout of Keras' downloaded ImageNet files
    source.save_weights(new_format)
    source.save(legacy)
    for path in (new_format, legacy):
        loaded = build_backbone(TINY, 32, str(path))
        for a, b in zip(source.weights, loaded.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weights_path_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="weights file not found"):
        build_backbone(TINY, 32, str(tmp_path / "absent.h5"))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    wrong = tmp_path / "other.weights.h5"
    other.save_weights(wrong)
    with pytest.raises(PipelineError, match="cannot load .*other.weights.h5 into backbone tiny"):
        build_backbone(TINY, 32, str(wrong))


def test_imagenet_unavailable_is_one_line_with_the_way_out(monkeypatch) -> None:
    asked = []

    def offline(fname, origin, **kwargs):
        asked.append((fname, origin, kwargs.get("file_hash")))
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution\nmore detail")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(PipelineError) as err:
        build_backbone(BACKBONES["xception"], 71, "imagenet")
    assert asked == [("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
                      "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "b0042744bf5b25fce3cb969f33bebb97")]
    text = str(err.value)
    assert "\n" not in text and "URL fetch failure" in text
    assert "--weights PATH" in text and "--weights none" in text
    with pytest.raises(PipelineError, match="no ImageNet weights"):
        build_backbone(TINY, 32, "imagenet")


def test_imagenet_efficientnet_file_from_a_path_is_normalized_as_keras_does(
        tmp_path: Path) -> None:
    spec = get_backbone("efficientnetb0")
    source = build_backbone(spec, 32, None)
    norm = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_variance.assign(IMAGENET_STDDEV_RGB)
    path = tmp_path / "effb0.weights.h5"
    source.save_weights(path)
    loaded = build_backbone(spec, 32, str(path))
    norm = next(layer for layer in loaded.layers if isinstance(layer, keras.layers.Normalization))
    np.testing.assert_allclose(norm.adapt_variance.numpy(), np.square(IMAGENET_STDDEV_RGB),
                               rtol=1e-6)

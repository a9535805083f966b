"""Backbone registry and detector: preprocessing inside the model, weights, freezing."""

import json
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models import registry as models
from dfpipe.models.build import (
    backbone_of,
    batchnorm_trainable,
    build_backbone,
    build_classifier,
    freeze_backbone,
    unfreeze_top,
)
from dfpipe.models.registry import BACKBONES, IMAGENET_STDDEV_RGB, get_backbone
from dfpipe.models.saving import check_classifier

TINY = get_backbone("tiny")


def test_registry_entries_are_consistent() -> None:
    assert "xception" in BACKBONES and "efficientnetb0" in BACKBONES
    for spec in BACKBONES.values():
        assert spec.min_size <= spec.input_size
        assert 0 < spec.training.lr <= spec.training.head_lr
        assert 0 <= spec.training.dropout < 1 and spec.training.weight_decay >= 0
        assert spec.training.schedule in models.SCHEDULES
        assert len(spec.model.mean) == len(spec.model.std) == 3
        model_config, train_defaults = asdict(spec.model), asdict(spec.training)
        assert "lr" not in model_config and "mean" not in train_defaults
        json.dumps([model_config, train_defaults])  # plain data, for the saved metadata
    assert get_backbone("Xception") is BACKBONES["xception"]
    assert BACKBONES["xception"].input_size == 299 and BACKBONES["xception"].min_size == 71
    with pytest.raises(PipelineError, match="unknown backbone 'resnet'.*xception"):
        get_backbone("resnet")


@pytest.mark.parametrize("name,size", [("tiny", 8), ("xception", 70)])
def test_size_below_minimum_is_one_clear_line(name: str, size: int) -> None:
    spec = get_backbone(name)
    with pytest.raises(PipelineError, match=f"below {name}'s minimum of {spec.min_size}") as err:
        build_classifier(spec, size, None, 0.1)
    assert "\n" not in str(err.value)


def test_detector_takes_raw_rgb_of_any_size_and_scales_inside() -> None:
    model = build_classifier(TINY, 32, None, 0.2)
    scaled = keras.Model(model.input, model.get_layer(models.SCALE_NAME).output)
    flat = np.stack([np.zeros((40, 40, 3)), np.full((40, 40, 3), 255.0)]).astype("float32")
    out = np.asarray(scaled(flat))
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)
    for side in (24, 32, 50):
        probs = np.asarray(model.predict(np.random.rand(3, side, side, 3) * 255, verbose=0))
        assert probs.shape == (3, 1) and np.all((probs >= 0) & (probs <= 1))


def test_output_stays_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_classifier(TINY, 32, None, 0.2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert backbone_of(model).layers[1].compute_dtype == "bfloat16"
    for name in (models.RESIZE_NAME, models.SCALE_NAME, models.OUTPUT_NAME):
        assert model.get_layer(name).compute_dtype == "float32"
    out = model(np.zeros((1, 32, 32, 3), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_xception_default_recipe_is_deepfakebench_after_a_head_warm_up() -> None:
    recipe = get_backbone("xception").training
    assert 1 <= recipe.head_epochs <= 3
    assert (recipe.lr, recipe.unfreeze, recipe.schedule, recipe.freeze_bn) == (
        2e-4, -1, "cosine", False)
    assert recipe.weight_decay > 0


def test_batchnorm_trains_from_a_per_replica_batch_of_16_unless_frozen() -> None:
    assert batchnorm_trainable(16, freeze_bn=False, pretrained=True)
    assert not batchnorm_trainable(15, freeze_bn=False, pretrained=True)
    assert not batchnorm_trainable(32, freeze_bn=True, pretrained=True)
    assert batchnorm_trainable(4, freeze_bn=True, pretrained=False)


def test_scaling_is_mean_and_std_as_data() -> None:
    spec = replace(TINY, model=replace(TINY.model, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0)))
    model = build_classifier(spec, 16, None, 0.0)
    scaled = keras.Model(model.input, model.get_layer(models.SCALE_NAME).output)
    pixel = np.array([50.0, 60.0, 70.0], "float32")
    out = np.asarray(scaled(np.tile(pixel, (1, 16, 16, 1))))
    np.testing.assert_allclose(out[0, 3, 3], (pixel - (10, 20, 30)) / (2, 4, 5), rtol=1e-6)


def test_efficientnet_scales_pixels_itself() -> None:
    spec = get_backbone("efficientnetb0")
    assert spec.model.scaling_in_backbone
    model = build_classifier(spec, 32, None, 0.2)
    names = {layer.name for layer in model.layers}
    assert models.SCALE_NAME not in names
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in backbone_of(model).layers)


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


def test_freeze_then_unfreeze_top_keeps_batchnorm_in_inference_mode() -> None:
    model = build_classifier(TINY, 32, None, 0.0)
    backbone = backbone_of(model)
    freeze_backbone(model)
    assert not backbone.trainable_weights and model.trainable_weights
    opened = unfreeze_top(model, 4, freeze_batchnorm=True)
    assert opened == 4
    trainable = [layer.name for layer in backbone.layers if layer.trainable_weights]
    assert trainable == ["tiny_conv3"]  # the top 4: conv3, bn3 (kept frozen), relu3, pool
    bn = backbone.get_layer("tiny_bn3")
    before = [np.array(v) for v in (bn.moving_mean, bn.moving_variance, bn.gamma)]
    conv_before = np.array(backbone.get_layer("tiny_conv3").kernel)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
    for old, new in zip(before, (bn.moving_mean, bn.moving_variance, bn.gamma), strict=True):
        np.testing.assert_array_equal(old, np.array(new))
    assert not np.allclose(conv_before, np.array(backbone.get_layer("tiny_conv3").kernel))
    assert unfreeze_top(model, -1, freeze_batchnorm=False) == len(backbone.layers)
    assert bn.trainable


def test_check_detector_compares_model_and_metadata() -> None:
    model = build_classifier(TINY, 32, None, 0.0)
    check_classifier(model, {"input_size": 32, "backbone": "tiny"})
    with pytest.raises(PipelineError, match="resizes to 32x32 but its metadata says input_size 64"):
        check_classifier(model, {"input_size": 64})

"""The classifier takes raw RGB, scales inside, has a float32 output, freezes as the recipe says."""

from dataclasses import replace

import keras
import numpy as np

from dfpipe.models import registry as models
from dfpipe.models.build import (
    backbone_of,
    batchnorm_trainable,
    build_classifier,
    freeze_backbone,
    unfreeze_top,
)
from dfpipe.models.registry import get_backbone

TINY = get_backbone("tiny")


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

"""Grad-CAM on the detector layout: it finds the right map, points at what drove the score,
and survives save/load of the nested backbone."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest
from app_support import save_tiny_model
from keras import layers

from dfpipe.models.saving import load_model
from dfpipe.serve.gradcam import GradCam, GradCamError, encode_image, last_conv_layer, overlay


def _red_detector() -> keras.Model:
    """The detector layout with a backbone whose only feature is the red channel: the more red,
    the higher P(fake). Grad-CAM must then light up exactly where the red is."""
    inputs = keras.Input((None, None, 3), name="rgb")
    x = layers.Resizing(32, 32, name="resize")(inputs)
    x = layers.Rescaling(1 / 255.0, name="scale")(x)
    bb_in = keras.Input((32, 32, 3))
    feat = layers.Conv2D(1, 1, use_bias=False, name="red")(bb_in)
    feat = layers.ReLU(name="red_act")(feat)
    backbone = keras.Model(bb_in, layers.GlobalAveragePooling2D()(feat), name="backbone")
    x = layers.Dropout(0.5, name="dropout")(backbone(x))
    outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("backbone").get_layer("red").set_weights([np.array([1, 0, 0], "float32")
                                                               .reshape(1, 1, 3, 1)])
    model.get_layer("p_fake").set_weights([np.array([[4.0]], "float32"),
                                           np.array([-1.0], "float32")])
    return model


def _patch(corner: str) -> np.ndarray:
    image = np.zeros((64, 64, 3), np.float32)
    if corner == "top-left":
        image[4:20, 4:20, 0] = 255
    else:
        image[44:60, 44:60, 0] = 255
    return image


def test_map_points_at_the_region_that_raised_p_fake():
    cam = GradCam(_red_detector())
    assert cam.layer_name == "red_act"
    maps = cam.maps([_patch("top-left"), _patch("bottom-right")])
    assert maps.shape == (2, 32, 32) and maps.max() == pytest.approx(1.0)
    top, bottom = maps  # the 64 px patches land on [2:10] and [22:30] of the 32 px map
    assert top[3:9, 3:9].min() > 0.9 and top[12:, :].max() == 0 and top[:, 12:].max() == 0
    assert bottom[23:29, 23:29].min() > 0.9 and bottom[:20, :].max() == 0


def test_map_for_a_real_call_shows_what_lowered_p_fake():
    # nothing in this image lowers P(fake): explaining "real" lights up nothing
    maps = GradCam(_red_detector()).maps([_patch("top-left")], towards_fake=[False])
    assert np.all(maps == 0)


def test_saved_and_loaded_detector_with_nested_backbone(tmp_path):
    path = save_tiny_model(tmp_path / "tiny.h5", bias=1.0)
    model, _ = load_model(path)
    cam = GradCam(model)
    assert cam.layer_name == "tiny_relu3"
    crops = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    maps = cam.maps(crops, [True, False, True])
    assert maps.shape == (3, 8, 8)  # 64 px through three 2x poolings and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    crop = crops[0].astype(np.uint8)
    blended = overlay(crop, maps[0])
    assert blended.shape == crop.shape and blended.dtype == np.uint8
    for fmt in (".jpg", ".png"):
        back = cv2.imdecode(np.frombuffer(encode_image(blended, fmt), np.uint8), cv2.IMREAD_COLOR)
        assert back.shape == crop.shape


def test_graph_that_is_not_a_chain_is_refused():
    inputs = keras.Input((32, 32, 3))
    bb_in = keras.Input((32, 32, 3))
    conv = layers.Conv2D(4, 3, padding="same", activation="relu")(bb_in)
    backbone = keras.Model(bb_in, layers.GlobalAveragePooling2D()(conv), name="bb")
    skip = layers.GlobalAveragePooling2D(name="skip")(inputs)
    merged = layers.Concatenate()([backbone(inputs), skip])
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(merged))
    with pytest.raises(GradCamError, match="not a plain chain"):
        GradCam(model)


def test_xception_map_is_its_last_conv_activation():
    backbone = keras.applications.Xception(weights=None, include_top=False,
                                           input_shape=(71, 71, 3), pooling="avg")
    assert last_conv_layer(backbone).name == "block14_sepconv2_act"

"""Grad-CAM: which parts of a face crop drove the detector's call.

Grad-CAM (Selvaraju et al., 2017) weighs the last convolutional feature map of the backbone by
the gradient of the class score, averaged over space. The detector wraps its backbone as a
nested Keras model between input layers (resize, scaling) and a head (dropout, dense), so the
backbone is rebuilt to also return that feature map, and the outer layers are replayed around
it; a self-check at construction proves the replay gives the model's own output. The class
score is the logit of P(fake) (the sigmoid saturates, its gradient vanishes for confident
crops); for a crop called real the sign is flipped, so the map shows what made it look real.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.45
SELF_CHECK_TOLERANCE = 1e-4
PROBE_SIZE = 64


class GradCamError(ValueError):
    """The model's structure does not allow Grad-CAM (no conv map, or a non-linear outer graph)."""


def last_conv_layer(model: Any) -> Any:
    """The last layer of ``model`` whose output is a 4-D feature map (batch, h, w, channels)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and not _is_input(layer):
            return layer
    raise GradCamError(f"{model.name} has no layer with a 4-D (convolutional) output")


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


class GradCam:
    """Grad-CAM maps for a detector (nested backbone or flat model), built once, reused."""

    def __init__(self, model: Any, layer_name: str | None = None) -> None:
        from dfpipe.models.onnxrun import is_onnx_model

        if is_onnx_model(model):
            raise GradCamError("heatmaps need the model's gradients, which an ONNX export does "
                               "not keep: serve the .h5 (--runtime tf) to see them")
        import keras

        self.model = model
        nested = [i for i, layer in enumerate(model.layers) if isinstance(layer, keras.Model)]
        if len(nested) == 1:
            backbone = model.layers[nested[0]]
            self._pre = [lyr for lyr in model.layers[:nested[0]] if not _is_input(lyr)]
            post = list(model.layers[nested[0] + 1:])
        elif not nested:
            backbone, self._pre, post = model, [], []
        else:
            raise GradCamError(f"{model.name} holds {len(nested)} sub-models; expected one "
                               "backbone")
        conv = backbone.get_layer(layer_name) if layer_name else last_conv_layer(backbone)
        self.layer_name = conv.name
        self._inner = keras.Model(backbone.inputs, [conv.output, backbone.output])
        self._head, self._last = post[:-1], post[-1] if post else None
        self._logit = (self._last is not None and hasattr(self._last, "kernel")
                       and getattr(self._last.activation, "__name__", "") == "sigmoid")
        self._self_check()
        self._compiled = self._compile()

    def _forward(self, x: Any) -> tuple[Any, Any]:
        """Feature map and P(fake) logit (or probability) for a float32 batch tensor."""
        import tensorflow as tf

        for layer in self._pre:
            x = layer(x, training=False)
        conv, y = self._inner(x, training=False)
        for layer in self._head:
            y = layer(y, training=False)
        if self._last is not None:
            if self._logit:
                y = tf.matmul(y, self._last.kernel) + self._last.bias
            else:
                y = self._last(y, training=False)
        return conv, tf.reshape(y, (-1,))

    def _self_check(self) -> None:
        import tensorflow as tf

        size = self.model.input_shape[1] or PROBE_SIZE
        probe = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        try:
            _, out = self._forward(tf.constant(probe))
            mine = tf.sigmoid(out).numpy() if self._logit else out.numpy()
            theirs = np.asarray(self.model(probe, training=False)).reshape(-1)
            same = mine.shape == theirs.shape and np.allclose(mine, theirs,
                                                              atol=SELF_CHECK_TOLERANCE)
        except Exception as exc:  # noqa: BLE001 - any failure to replay means the same
            log.debug("Grad-CAM replay failed: %s", exc)
            same = False
        if not same:
            raise GradCamError(f"replaying {self.model.name}'s layers does not reproduce its "
                               "output (the graph around the backbone is not a plain chain)")

    def _compile(self) -> Any:
        """Feature maps and their gradients as one traced graph (several times faster than
        eager on CPU); any batch size and crop size, so it is traced once."""
        import tensorflow as tf

        def run(x: Any, sign: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                conv, score = self._forward(x)
                target = tf.reduce_sum(score * sign)
            return conv, tape.gradient(target, conv)

        return tf.function(run, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.float32)])

    def maps(self, images: Sequence[np.ndarray] | np.ndarray,
             towards_fake: Sequence[bool] | None = None) -> np.ndarray:
        """Grad-CAM maps (N, h, w) in [0, 1] at feature-map resolution.

        ``towards_fake[i]`` picks the class explained for image i (default: fake for all).
        A map of zeros means no region pushed the score that way.
        """
        import tensorflow as tf

        x = tf.constant(np.stack([np.asarray(im, np.float32) for im in images]))
        n = int(x.shape[0])
        sign = np.ones(n, np.float32) if towards_fake is None else \
            np.where(np.asarray(towards_fake, bool), 1.0, -1.0).astype(np.float32)
        conv, grads = self._compiled(x, tf.constant(sign))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1)).numpy()
        peak = cam.reshape(n, -1).max(axis=1)
        scale = np.where(peak > 0, peak, 1.0)
        return (cam / scale[:, None, None]).astype(np.float32)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The RGB crop with the map, upsampled to its size, blended in as a JET colour map."""
    h, w = image.shape[:2]
    heat = cv2.resize(np.clip(cam, 0, 1).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(np.asarray(image, np.uint8), 1.0 - alpha, colour, alpha, 0.0)


def encode_image(image: np.ndarray, fmt: str = ".jpg", quality: int = 90) -> bytes:
    """An RGB image as PNG or JPEG bytes."""
    fmt = fmt.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cannot encode image as {fmt}")
    return buf.tobytes()


def heatmap_images(cam: GradCam, crops: Sequence[np.ndarray], towards_fake: Sequence[bool],
                   fmt: str = ".jpg", alpha: float = DEFAULT_ALPHA) -> list[bytes]:
    """Encoded overlays for a batch of crops (the crops must share one size)."""
    maps = cam.maps(crops, towards_fake)
    return [encode_image(overlay(crop, m, alpha), fmt) for crop, m in zip(crops, maps,
                                                                         strict=True)]

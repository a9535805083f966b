"""Decode a face crop to RGB: the one reader training, evaluation and the app share.

OpenCV decodes to BGR; converting here, once, means no stage can feed the model
channel-swapped pixels that another stage decoded differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfpipe.core.errors import PipelineError


def read_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 H x W x 3 RGB; PipelineError naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PipelineError(f"cannot read image {path} (missing, corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB pixels of JPEG bytes, decoded as :func:`dfpipe.core.images.read_rgb` decodes a file."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode JPEG bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_feed_size(image: np.ndarray, size: int | None) -> np.ndarray:
    """A crop brought to the side the model was fed in training (``size``; None leaves it).

    Crops of known settings already have it. A crop of another size (a folder of crops whose
    settings are unknown) is shrunk or grown with area interpolation, the one resize rule
    training, evaluate and the app all apply, before the model's own resize layer.
    """
    if size is None or image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def feed_size_of(meta: dict[str, Any]) -> int | None:
    """The side a saved model was fed in training, from its metadata (None if not recorded)."""
    pre = meta.get("preprocessing")
    size = pre.get("trained_on_size") if isinstance(pre, dict) else None
    return int(size) if isinstance(size, int) and size > 0 else None


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image shrunk (area interpolation) so its longer side is at most ``max_side``."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)

"""Decode a face crop to RGB: the one reader training, evaluation and the app share.

OpenCV decodes to BGR; converting here, once, means no stage can feed the model
channel-swapped pixels that another stage decoded differently.
"""

from __future__ import annotations

from pathlib import Path

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

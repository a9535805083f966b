"""Shared test helpers: generated videos and the path to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                  reason="../shared/data is absent")


def write_numbered_video(path: Path, n_frames: int, size: tuple[int, int] = (64, 48),
                         fps: float = 10.0) -> Path:
    """An mp4 whose frame i is a flat grey of level 6*i, so a frame's index can be read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n_frames):
        writer.write(np.full((size[1], size[0], 3), min(255, 6 * i), np.uint8))
    writer.release()
    return path


def frame_level(frame: np.ndarray) -> int:
    """The index encoded by write_numbered_video."""
    return int(round(float(frame.mean()) / 6))

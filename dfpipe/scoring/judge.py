"""Crops on disk -> per-crop P(fake) -> per-video scores: evaluate's scorer, which training
also runs on the model it saved, so the validation figures it records are evaluate's."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.images import read_rgb, to_feed_size
from dfpipe.core.splittable import Crop
from dfpipe.scoring.crops import DEFAULT_BATCH_SIZE, score_crops
from dfpipe.scoring.videos import VideoScore, score_videos

READ_WORKERS = 4


def read_images(paths: Sequence[Path], chunk: int,
                feed: int | None = None) -> Iterator[np.ndarray]:
    """Decode images in order (at the model's feed size, as training read them) with a thread
    pool, reading the next chunk while one is used."""
    def read(path: Path) -> np.ndarray:
        return to_feed_size(read_rgb(path), feed)

    with ThreadPoolExecutor(max_workers=min(READ_WORKERS, os.cpu_count() or 1)) as pool:
        pending: list[Future[np.ndarray]] = []
        for start in range(0, len(paths), chunk):
            ahead = [pool.submit(read, p) for p in paths[start:start + chunk]]
            yield from (f.result() for f in pending)
            pending = ahead
        yield from (f.result() for f in pending)


def crop_order(crop: Crop) -> tuple[float, str]:
    """A crop's place in its video's timeline: frame, then file name (``FRAME_FACE.jpg``)."""
    return (float(crop.frame), crop.path.name)


def judge_split(model: Any, crops: Sequence[Crop], rule: str, crops_per_video: int,
                feed: int | None, batch_size: int = DEFAULT_BATCH_SIZE,
                progress: bool = False) -> tuple[np.ndarray, dict[str, VideoScore]]:
    """Every crop's P(fake), and each video's score from ``crops_per_video`` of its crops
    drawn evenly in time (0: all) by ``rule``."""
    paths = [c.path for c in crops]
    scores = score_crops(model, read_images(paths, batch_size, feed), batch_size,
                         total=len(paths), progress=progress)
    videos = score_videos([c.video_id for c in crops], [crop_order(c) for c in crops], scores,
                          rule, crops_per_video)
    return scores, videos

"""The frames one analysis reads: sampled, decoded ahead in a thread, within per-video limits.

A video's header can lie about its length and frame rate, so the work an upload costs is
bounded by what is actually decoded: at most ``max_frames`` frames are decoded, every frame
handed on is checked against ``max_pixels``, and a wall-clock deadline stops the analysis.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.extract.video import VideoError, VideoInfo, iter_sampled_frames

DEFAULT_MAX_FRAMES = 18000
"""Frames decoded per video: ten minutes at 30 fps."""
DEFAULT_MAX_FACES = 2000
"""Face crops scored per video."""
DEFAULT_MAX_PIXELS = 7680 * 4320
"""8K UHD: one such frame already takes 100 MB as RGB."""
PREFETCH_BYTES = 256 * 1024 * 1024
_END = object()


class LimitExceeded(VideoError):
    """A video needs more work than the limits allow (frame size, running time)."""


@dataclass(frozen=True)
class Limits:
    """The most work one video may cost; None switches a limit off.

    ``max_frames`` and ``max_faces`` stop the analysis early (the video is judged on what was
    read, and the result says so); ``max_pixels`` and ``timeout_s`` refuse it.
    """

    max_frames: int | None = DEFAULT_MAX_FRAMES
    max_faces: int | None = DEFAULT_MAX_FACES
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_faces", "max_pixels", "timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


class Deadline:
    """A wall-clock budget; :meth:`check` raises LimitExceeded once it is spent."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s if timeout_s else None

    def check(self, _index: int = 0) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise LimitExceeded(f"the analysis took longer than the {self.timeout_s:g} s "
                                "limit per video: send a shorter clip")


def check_pixels(frame: np.ndarray, max_pixels: int | None) -> None:
    """Raise LimitExceeded when a decoded frame is larger than ``max_pixels``."""
    height, width = frame.shape[:2]
    if max_pixels is not None and width * height > max_pixels:
        raise LimitExceeded(f"a frame of {width}x{height} pixels exceeds the limit of "
                            f"{max_pixels:,} pixels per frame: downscale the video first")


def checked_frames(frames: Iterator[tuple[int, np.ndarray]],
                   max_pixels: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """``frames`` with every frame's size checked (not only the first: sizes can change)."""
    try:
        for index, frame in frames:
            check_pixels(frame, max_pixels)
            yield index, frame
    finally:
        frames.close()  # type: ignore[attr-defined]


def feed(path: Path, every: int | None, frames: int | None, info: VideoInfo, limits: Limits,
         deadline: Deadline, timing: dict[str, float],
         batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """The sampled frames of a video within ``limits``, decoded ahead of the caller."""
    source = iter_sampled_frames(path, every, frames, info, limits.max_frames, deadline.check)
    return prefetch(checked_frames(source, limits.max_pixels), prefetch_depth(info, batch),
                    timing)


def expected_samples(reported: int, every: int | None, frames: int | None,
                     max_frames: int | None = None) -> int:
    """How many frames sampling should give, from the header's count (0 when unknown)."""
    if max_frames is not None:
        reported = min(reported, max_frames)
    if reported <= 0:
        return 0
    if frames:
        return min(frames, reported)
    step = every or 1
    return (reported + step - 1) // step


def prefetch(frames: Iterator[tuple[int, np.ndarray]], depth: int,
             timing: dict[str, float]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames of ``frames``, decoded ahead in a thread (OpenCV releases the GIL), so
    decoding overlaps detection and classification; at most ``depth`` frames wait.

    ``timing['decode_s']`` gets the decoder's busy time, ``timing['decode_wait_s']`` the part
    of it the caller waited for (not hidden behind detection); an error while decoding is
    raised here, in the caller's thread. Stopping early (an error downstream) stops the decoder.
    """
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    break
                finally:
                    timing["decode_s"] += time.perf_counter() - t0
                put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            put(exc)
            return
        finally:
            frames.close()  # type: ignore[attr-defined]
        put(_END)

    thread = threading.Thread(target=produce, name="dfpipe-decode", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = pending.get()
            timing["decode_wait_s"] = timing.get("decode_wait_s", 0.0) + time.perf_counter() - t0
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def prefetch_depth(info: Any, batch: int) -> int:
    """Enough frames to feed one detector batch, within PREFETCH_BYTES of RGB frames."""
    frame_bytes = max(1, info.width * info.height * 3)
    return int(max(2, min(max(2, batch), PREFETCH_BYTES // frame_bytes)))

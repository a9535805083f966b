"""Which frames of a video to read, and reading only those.

Frames that are not sampled are skipped with ``grab()`` (no colour conversion, no copy);
only sampled frames are ``retrieve()``-d. The container's frame count is only a hint:
it can be wrong or zero, so the true count is what was actually read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfpipe.extract.sniff import container_of, refusal

log = logging.getLogger(__name__)

DEFAULT_EVERY = 15


class VideoError(Exception):
    """The file cannot be decoded as a video (corrupt, truncated, not a video)."""


@dataclass
class VideoInfo:
    """What the container claims, plus what was actually read (filled while reading)."""

    fps: float
    reported_frames: int
    width: int
    height: int
    frames_read: int = 0
    capped: bool = False


def sample_indices(n_frames: int, every: int | None = None, frames: int | None = None) -> list[int]:
    """Indices of the frames to keep among ``n_frames``: every Nth, or K evenly spaced.

    K evenly spaced frames are the centres of K equal slices, so the first and last
    frames (often fades or black) are not over-represented.
    """
    if n_frames <= 0:
        return []
    if frames is not None:
        if frames <= 0:
            raise ValueError("frames must be positive")
        k = min(frames, n_frames)
        return sorted({int((i + 0.5) * n_frames / k) for i in range(k)})
    step = every or DEFAULT_EVERY
    if step <= 0:
        raise ValueError("every must be positive")
    return list(range(0, n_frames, step))


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video or raise VideoError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"file not found: {path.name}")
    if container_of(path) is None:
        raise VideoError(refusal())
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError("cannot open as video (not a video file, or unsupported codec)")
    info = VideoInfo(
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        reported_frames=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
    )
    return cap, info


def _read_indices(path: Path, wanted: set[int] | None, every: int | None,
                  info: VideoInfo, max_frames: int | None = None,
                  on_grab: Callable[[int], None] | None = None,
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """One pass over the video; yields RGB frames whose index is wanted (or every Nth).

    At most ``max_frames`` frames are decoded (``info.capped`` says whether more were left);
    ``on_grab(index)`` runs before each frame is decoded and may raise to stop the pass.
    """
    cap, _ = open_video(path)
    index = 0
    info.capped = False
    try:
        while True:
            if max_frames is not None and index >= max_frames:
                info.capped = bool(cap.grab())
                break
            if on_grab is not None:
                on_grab(index)
            if not cap.grab():
                break
            keep = index in wanted if wanted is not None else index % every == 0
            if keep:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
        info.frames_read = index


def iter_sampled_frames(path: Path, every: int | None = None, frames: int | None = None,
                        info: VideoInfo | None = None, max_frames: int | None = None,
                        on_grab: Callable[[int], None] | None = None,
                        ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb_frame)`` for the sampled frames of a video.

    With ``every`` the sampling needs no frame count. With ``frames`` (K evenly spaced)
    the reported count picks the indices; if the video turns out shorter or longer than
    reported, or the count is missing, the indices are chosen again on the true length (else
    an under-reported count would take all K frames from the start of the video).
    ``info`` (from :func:`open_video`) receives ``frames_read``. Raises VideoError if
    nothing can be decoded. ``max_frames`` caps the frames decoded (the video is judged on
    its first ``max_frames`` frames, whatever its header claims); ``on_grab`` as in
    :func:`_read_indices`.
    """
    limit: dict[str, Any] = {"max_frames": max_frames, "on_grab": on_grab}
    if info is None:
        cap, info = open_video(path)
        cap.release()
    if frames is None:
        yield from _check_decoded(
            _read_indices(path, None, every or DEFAULT_EVERY, info, **limit), info)
        return
    reported = info.reported_frames
    if max_frames is not None and reported > max_frames:
        reported = max_frames
    if reported > 0:
        wanted = sample_indices(reported, frames=frames)
        got = []
        for item in _read_indices(path, set(wanted), None, info, **limit):
            got.append(item)
        if info.frames_read == 0:
            raise VideoError("no frame could be decoded (corrupt or truncated file)")
        if info.frames_read == reported:
            yield from got
            return
        log.info("%s: container claims %d frames but %d were read; resampling",
                 path, info.reported_frames, info.frames_read)
    else:
        for _ in _read_indices(path, set(), None, info, **limit):
            pass
    true_count = info.frames_read
    if true_count == 0:
        raise VideoError("no frame could be decoded (corrupt or truncated file)")
    wanted = sample_indices(true_count, frames=frames)
    yield from _read_indices(path, set(wanted), None, info, **limit)


def _check_decoded(it: Iterator[tuple[int, np.ndarray]],
                   info: VideoInfo) -> Iterator[tuple[int, np.ndarray]]:
    yielded = False
    for item in it:
        yielded = True
        yield item
    if not yielded and info.frames_read == 0:
        raise VideoError("no frame could be decoded (corrupt or truncated file)")

"""Uploads: stored under a random name, checked to really be a video before any work is queued.

The extension a client gives means nothing: FFmpeg would happily open a JPEG as a one-frame
"video", or a text file listing other files as a concatenation of them. So images are
recognised (by Pillow) and refused, the container must be one of an allow-list recognised
from the leading bytes (:mod:`dfpipe.extract.sniff`), and it must open as a video and yield a
first frame. Frame size and running time are checked from the container
before any full-size frame is decoded.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dfpipe.extract.sniff import container_of, refusal
from dfpipe.extract.video import VideoError, open_video

MAX_NAME = 200
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadError(Exception):
    """An upload the server refuses: an HTTP status and one line saying why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class VideoCheck:
    """What the container says about an accepted upload."""

    width: int
    height: int
    fps: float
    frames: int


def new_id() -> str:
    """A random job id (128 bits, hex): also the only name the upload gets on disk."""
    return secrets.token_hex(16)


def display_name(name: str | None) -> str:
    """The client's file name for display only: base name, printable, bounded, no formula."""
    text = unicodedata.normalize("NFC", str(name or "video"))
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    text = text.lstrip("=+-@")
    return (text or "video")[:MAX_NAME]


def image_format(path: Path) -> str | None:
    """The image format Pillow recognises in the file (JPEG, PNG, GIF...), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return str(img.format or "image")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def check_video(path: Path, max_pixels: int, max_duration_s: float) -> VideoCheck:
    """Raise UploadError unless the file is a decodable video of acceptable size and length."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise UploadError(400, "the file is empty: choose a video file")
    fmt = image_format(path)
    if fmt is not None:
        raise UploadError(415, f"this is a {fmt} image, not a video: upload a video file "
                               "(mp4, avi, mov, mkv, webm)")
    if container_of(path) is None:
        raise UploadError(415, f"{refusal()}: upload a video file")
    try:
        cap, info = open_video(path)
    except VideoError:
        raise UploadError(415, "the file cannot be opened as a video (not a video, an "
                               "unsupported codec, or truncated before its index): upload a "
                               "playable video file") from None
    try:
        _check_size(info.width, info.height, max_pixels)
        if info.fps > 0 and info.reported_frames / info.fps > max_duration_s:
            raise UploadError(422, f"the video lasts {info.reported_frames / info.fps:.0f} s; "
                                   f"the limit is {max_duration_s:.0f} s: cut it shorter")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UploadError(422, "no frame of this video can be decoded (corrupt or "
                                   "truncated file): upload a playable copy")
        height, width = frame.shape[:2]
        _check_size(width, height, max_pixels)
    finally:
        cap.release()
    return VideoCheck(width, height, info.fps, info.reported_frames)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise UploadError(422, f"frames of {width}x{height} pixels exceed the limit of "
                               f"{max_pixels:,} pixels per frame (8K UHD by default): "
                               "downscale the video first")

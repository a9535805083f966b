"""Only media containers reach FFmpeg: recognised from their leading bytes, whatever the name."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import write_numbered_video

from dfpipe.extract.sniff import container_of, sniff
from dfpipe.extract.video import VideoError, open_video


def _avi(path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return path


def concat_list(folder, target: str):
    """A 40-byte FFmpeg concat list naming a file beside it: FFmpeg opens it as that video."""
    listing = folder / "list.mp4"
    listing.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return listing


def test_real_videos_are_recognised(tmp_path):
    assert container_of(write_numbered_video(tmp_path / "v.mp4", 3)) == "MP4/MOV"
    assert container_of(_avi(tmp_path / "v.avi")) == "AVI"
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\0" * 60) == "Matroska/WebM"
    ts = bytes([0x47] + [0] * 187) * 4
    assert sniff(ts) == "MPEG-TS" and sniff(ts[:100]) is None


@pytest.mark.parametrize("head", [b"", b"ffconcat version 1.0\n", b"#EXTM3U\n", b"\xff\xd8\xff",
                                  b"RIFF\0\0\0\0WAVE", b"GIF89a", b"\x00garbage" * 50])
def test_anything_else_is_refused(head):
    assert sniff(head) is None


def test_a_concat_list_never_opens_as_a_video(tmp_path):
    _avi(tmp_path / "beside.avi")
    listing = concat_list(tmp_path, "beside.avi")
    assert cv2.VideoCapture(str(listing)).isOpened()  # what FFmpeg alone would do
    with pytest.raises(VideoError, match="not a supported container"):
        open_video(listing)

"""Frames for one analysis: decoded ahead in order, and within the per-video limits."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.extract.video import VideoError
from dfpipe.serve.frames import prefetch


def test_frames_decoded_ahead_arrive_in_order_and_errors_reach_the_caller():
    def frames(n, fail=False):
        for i in range(n):
            yield i, np.full((2, 2, 3), i, np.uint8)
        if fail:
            raise VideoError("decoder gave up")

    timing = {"decode_s": 0.0}
    assert [i for i, _ in prefetch(frames(10), 2, timing)] == list(range(10))
    assert timing["decode_s"] > 0 and "decode_wait_s" in timing
    got = []
    with pytest.raises(VideoError, match="decoder gave up"):
        for i, _ in prefetch(frames(3, fail=True), 2, {"decode_s": 0.0}):
            got.append(i)
    assert got == [0, 1, 2]

    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i, None
                i += 1
        finally:
            closed.append(True)

    stream = prefetch(endless(), 2, {"decode_s": 0.0})
    assert next(stream)[0] == 0
    stream.close()  # the caller stops early: the decoder thread stops too
    assert closed == [True]


def test_every_frame_is_checked_not_only_the_first():
    from dfpipe.serve.frames import LimitExceeded, checked_frames

    def growing():
        for i, side in enumerate((100, 100, 100, 1000)):
            yield i, np.zeros((side, side, 3), np.uint8)

    got = []
    with pytest.raises(LimitExceeded, match="1000x1000 pixels exceeds the limit of 20,000"):
        for i, _ in checked_frames(growing(), 20_000):
            got.append(i)
    assert got == [0, 1, 2]
    assert len(list(checked_frames(growing(), None))) == 4


def test_deadline_and_limits():
    import time

    from dfpipe.serve.frames import Deadline, LimitExceeded, Limits

    Deadline(None).check()
    Deadline(60).check()
    spent = Deadline(0.01)
    time.sleep(0.02)
    with pytest.raises(LimitExceeded, match="longer than the 0.01 s limit"):
        spent.check()
    with pytest.raises(ValueError, match="max_frames"):
        Limits(max_frames=0)

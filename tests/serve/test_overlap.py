"""The background scorer (dfpipe.serve.overlap): crop order kept, errors raised to the caller."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dfpipe.serve.overlap import BackgroundScorer


def test_scores_come_back_in_crop_order_from_another_thread() -> None:
    seen: list[str] = []

    def score(chunk: list[np.ndarray]) -> list[float]:
        seen.append(threading.current_thread().name)
        time.sleep(0.05 if chunk[0][0, 0, 0] == 0 else 0.0)  # the first chunk is the slowest
        return [float(c[0, 0, 0]) for c in chunk]

    scorer = BackgroundScorer(score)
    crops = [np.full((2, 2, 3), i, np.uint8) for i in range(11)]
    for start in range(0, 11, 4):
        scorer.submit(crops[start:start + 4])
    scorer.submit([])
    assert scorer.scores() == [float(i) for i in range(11)]
    assert seen and all(name.startswith("dfpipe-classify") for name in seen)


def test_an_error_in_a_chunk_reaches_the_caller() -> None:
    def score(chunk: list[np.ndarray]) -> list[float]:
        raise ValueError("model failed")

    scorer = BackgroundScorer(score)
    scorer.submit([np.zeros((2, 2, 3), np.uint8)])
    with pytest.raises(ValueError, match="model failed"):
        scorer.scores()

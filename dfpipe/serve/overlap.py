"""Score crops in one background thread while the next frames' faces are still being found.

On two cores, face detection (many small network runs) and the classifier (a few large ones)
each leave cores idle; letting the classifier start on the first crops while detection goes on
fills those gaps. Chunks are scored in the order they were handed over, by one thread, so the
scores come back in crop order exactly as one pass at the end would give them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

OVERLAP_CHUNK = 8  # crops per background call: small enough to start early


class BackgroundScorer:
    """``submit`` chunks of crops, ``scores`` waits for them all (an error in a chunk is raised
    there, in the caller's thread)."""

    def __init__(self, score: Callable[[list[np.ndarray]], Sequence[float]]) -> None:
        self._score = score
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dfpipe-classify")
        self._futures: list[Future] = []

    def submit(self, crops: list[np.ndarray]) -> None:
        if crops:
            self._futures.append(self._pool.submit(self._score, list(crops)))

    def scores(self) -> list[float]:
        """Every submitted crop's score, in submission order."""
        try:
            return [float(v) for future in self._futures for v in future.result()]
        finally:
            self.close()

    def close(self) -> None:
        """Stop: chunks not started are dropped (an analysis that failed needs no scores)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

"""Picking K of N time-ordered items evenly: one rule for training's per-video draw, the
split's per-video cap and the crops a video is judged on, so they cannot drift apart."""

from __future__ import annotations

import numpy as np


def evenly_spaced(n: int, k: int | None, rng: np.random.Generator | None = None) -> list[int]:
    """Indices of ``k`` of ``n`` time-ordered items, one from each of ``k`` equal stretches:
    the stretch's middle item, or a random one of it with ``rng`` (training's redraw each
    epoch). Every index when ``k`` is None or below 1, or when ``n <= k``."""
    if not k or k < 1 or n <= k:
        return list(range(n))
    edges = np.linspace(0, n, k + 1).astype(int)
    return [int(rng.integers(lo, hi)) if rng is not None else (lo + hi) // 2
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)]

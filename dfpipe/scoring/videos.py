"""Videos judged one way everywhere: K crops drawn evenly in time, their scores, one rule.

Training picks its video threshold on validation videos judged like this, evaluate scores a
split like this and the app judges an upload like this, so the threshold always meets the
kind of score it was chosen for: a rule such as ``max`` gives higher scores to a video with
more crops, so the count must be the same where the threshold is chosen and where it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfpipe.core.sampling import evenly_spaced
from dfpipe.scoring.crops import aggregator

DRAW = ("evenly spaced in time: the middle crop of each of K equal stretches of the video's "
        "crops ordered by (frame, face); every crop when the video has K or fewer")


@dataclass(frozen=True)
class VideoScore:
    """One video's score and how many of its crops it was judged on."""

    score: float
    used: int
    found: int


def draw_crops(order: Sequence[tuple[float, ...]], k: int | None) -> list[int]:
    """Indices of the crops a video is judged on: ``k`` of them (None or 0: all), evenly
    spaced over ``order`` (each crop's (frame, face) or other time key)."""
    by_time = sorted(range(len(order)), key=lambda i: order[i])
    return sorted(by_time[i] for i in evenly_spaced(len(by_time), k))


def score_videos(video_ids: Sequence[str], order: Sequence[tuple[float, ...]],
                 scores: Sequence[float] | np.ndarray, rule: str,
                 k: int | None) -> dict[str, VideoScore]:
    """Each video's score (in order of first appearance) from ``k`` drawn crops by ``rule``."""
    fn = aggregator(rule)
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if not len(video_ids) == len(order) == arr.size:
        raise ValueError(f"{len(video_ids)} video ids, {len(order)} times, {arr.size} scores")
    members: dict[str, list[int]] = {}
    for i, video in enumerate(video_ids):
        members.setdefault(video, []).append(i)
    out = {}
    for video, idx in members.items():
        picked = [idx[j] for j in draw_crops([order[i] for i in idx], k)]
        out[video] = VideoScore(fn(arr[picked]), len(picked), len(idx))
    return out


def rates_at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """FPR and TPR of calling fake at or above ``threshold`` (None for a missing class)."""
    y = np.asarray(labels, dtype=int)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    fpr = float(called[y == 0].mean()) if (y == 0).any() else None
    tpr = float(called[y == 1].mean()) if (y == 1).any() else None
    return {"fpr": fpr, "tpr": tpr}

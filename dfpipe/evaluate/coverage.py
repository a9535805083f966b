"""Coverage: which videos of a split the numbers leave out, and metrics that count them.

split.py lists, per split, the videos that have no kept crop (``no_face``, ``error``, or
every crop removed by the quality filter) in ``dropped_videos.csv``. The app must still
answer for such videos, so evaluate states the coverage (videos scored / videos in the
split) and repeats the video metrics with every uncovered video scored 0.5, the DFDC
convention for a video the detector cannot judge.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import DROPPED_TABLE
from dfpipe.core.labels import label_id

UNCOVERED_SCORE = 0.5


@dataclass(frozen=True)
class Uncovered:
    """A video of the split with no scored crop, and why."""

    video_id: str
    label: int
    group: str
    reason: str


def read_uncovered(root: Path, split: str) -> list[Uncovered] | None:
    """The split's dropped videos; None when the folder has no dropped_videos.csv (unknown)."""
    path = Path(root) / DROPPED_TABLE
    if not path.is_file():
        return None
    out = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("split") == split:
                    out.append(Uncovered(row["video_id"], label_id(row["label"]),
                                         row.get("group") or row["video_id"],
                                         row.get("reason") or "unknown"))
    except (KeyError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}; re-run split.py") from None
    return out


def coverage_summary(scored: int, uncovered: Sequence[Uncovered] | None) -> dict[str, Any]:
    """Videos scored out of the videos in the split, and the uncovered ones by reason."""
    if uncovered is None:
        return {"known": False, "videos_scored": scored, "videos_in_split": None,
                "fraction": None, "uncovered": None, "uncovered_by_reason": None,
                "note": f"no {DROPPED_TABLE} in the data folder: videos dropped before "
                        "the split (no face, errors, quality filter) are not known"}
    total = scored + len(uncovered)
    return {"known": True, "videos_scored": scored, "videos_in_split": total,
            "fraction": scored / total if total else None, "uncovered": len(uncovered),
            "uncovered_by_reason": dict(sorted(Counter(u.reason for u in uncovered).items())),
            "note": f"uncovered videos listed in {DROPPED_TABLE}"}


def with_uncovered(y: np.ndarray, s: np.ndarray, groups: Sequence[str],
                   uncovered: Sequence[Uncovered]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Video labels, scores and groups with every uncovered video added at score 0.5."""
    y_all = np.concatenate([np.asarray(y), [u.label for u in uncovered]]).astype(np.int64)
    s_all = np.concatenate([np.asarray(s, dtype=np.float64),
                            np.full(len(uncovered), UNCOVERED_SCORE)])
    return y_all, s_all, list(groups) + [u.group for u in uncovered]

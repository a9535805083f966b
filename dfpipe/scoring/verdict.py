"""From the scores of a video's face crops to its verdict and a sentence explaining it.

The video score is the same per-video rule evaluate uses (:mod:`dfpipe.scoring.crops`), compared
with the model's threshold; a score close to the threshold is flagged as borderline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfpipe.scoring.videos import score_videos

VERDICT_FAKE = "FAKE"
VERDICT_REAL = "REAL"
VERDICT_NO_FACE = "NO FACE FOUND"
BORDERLINE = 0.1
"""A video score closer than this to the threshold is flagged as borderline."""


def call_faces(faces: list[dict[str, Any]], scores: list[float], threshold: float) -> None:
    """Store each face's score and its own call (fake at or above the threshold)."""
    for face, score in zip(faces, scores, strict=True):
        face["score"] = score
        face["call"] = "fake" if score >= threshold else "real"


def frame_scores(frames: list[dict[str, Any]], faces: list[dict[str, Any]]) -> None:
    """A frame's score is its most fake-looking face (the one the chart shows)."""
    best: dict[int, float] = {}
    for face in faces:
        best[face["frame"]] = max(best.get(face["frame"], 0.0), face["score"])
    for frame in frames:
        frame["score"] = best.get(frame["frame"])


def judge(faces: list[dict[str, Any]], threshold: float, rule: str, frames_sampled: int,
          min_confidence: float | None, kept: Sequence[int] | None = None,
          crops_per_video: int = 0) -> dict[str, Any]:
    """verdict, score, margin, borderline, agreement and message of one video.

    The score is the rule over ``crops_per_video`` crops drawn evenly in time (0: all), as
    evaluate and training judge a video. With ``kept`` (the faces that pass the training
    quality rules) they are drawn from those and ``score_unfiltered`` (drawn from every face)
    is given beside it.
    """
    if not faces:
        return {"verdict": VERDICT_NO_FACE, "score": None, "margin": None, "borderline": None,
                "agreement": None,
                "message": f"no face with confidence >= {min_confidence} in "
                           f"{frames_sampled} sampled frames"}
    pool = faces if kept is None else [faces[i] for i in kept]
    score, used = video_score(pool, rule, crops_per_video)
    fake = score >= threshold
    margin = score - threshold
    same = sum(1 for f in faces if (f["call"] == "fake") == fake)
    out = {"verdict": VERDICT_FAKE if fake else VERDICT_REAL, "score": score,
           "margin": margin, "borderline": abs(margin) < BORDERLINE,
           "agreement": same / len(faces),
           "message": explain(score, threshold, margin, same, len(faces)),
           "crops_used": used, "crops_found": len(faces),
           "crops_per_video": crops_per_video}
    if kept is not None:
        out["score_unfiltered"] = video_score(faces, rule, crops_per_video)[0]
    return out


def video_score(faces: Sequence[dict[str, Any]], rule: str,
                crops_per_video: int = 0) -> tuple[float, int]:
    """The per-video score evaluate computes, over ``crops_per_video`` of these faces drawn
    evenly in time (0: all), and how many it used."""
    judged = score_videos(["video"] * len(faces), [(f["frame"], f["face"]) for f in faces],
                          [f["score"] for f in faces], rule, crops_per_video)["video"]
    return judged.score, judged.used


def explain(score: float, threshold: float, margin: float, same: int, total: int) -> str:
    """One sentence: the score against the threshold, how clear it is, how many crops agree."""
    side = "above" if margin >= 0 else "below"
    how = "borderline: treat with caution" if abs(margin) < BORDERLINE else "clear"
    return (f"P(fake) {score:.3f} is {abs(margin):.3f} {side} the threshold {threshold:.3f} "
            f"({how}); {same} of {total} face crops agree")

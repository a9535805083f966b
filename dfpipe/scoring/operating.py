"""The operating point of a detector: per-video rule and thresholds, chosen where they are used.

Users see one verdict per video, so the threshold they meet must be chosen on validation
*videos* scored with the rule that will be deployed, not on validation crops. train.py
records three things, each with its source: ``aggregate`` (the per-video rule),
``threshold`` (video level) and ``crop_threshold`` (crop level, for per-crop calls and
frame metrics). evaluate.py and the app read them back through
:func:`resolve_operating_point`; models saved before these keys load with a one-line notice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.scoring.crops import AGGREGATORS, RULE_PARAMETERS, aggregator
from dfpipe.scoring.videos import DRAW, VideoScore, rates_at, score_videos

log = logging.getLogger(__name__)

DEFAULT_AGGREGATE = "mean"
FALLBACK_THRESHOLD = 0.5
THRESHOLD_RULE = "max Youden's J (TPR - FPR, i.e. balanced accuracy)"
LEGACY_NOTICE = ("model metadata predates video-level thresholds (no 'crop_threshold'): its "
                 "threshold was chosen on validation crops and is used for videos too, with "
                 "the {rule} rule; retrain to get a threshold chosen on validation videos")


def choose_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The cut that maximises TPR - FPR on validation (needs both classes), placed midway
    between the lowest score called fake and the next score below it, never on a score, so a
    rounding difference between two runs of the same model cannot flip a video."""
    from sklearn.metrics import roc_curve

    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        raise PipelineError("validation has one class only: cannot choose a threshold")
    fpr, tpr, cuts = roc_curve(y, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    best = int(np.argmax(np.where(np.isfinite(cuts), tpr - fpr, -np.inf)))
    above = cuts[best]
    below = cuts[best + 1] if best + 1 < len(cuts) else 0.0
    return float(np.clip((above + below) / 2.0, 0.0, 1.0))


def choose_operating_point(video_ids: Sequence[str], labels: Sequence[int],
                           scores: Sequence[float], rule: str = DEFAULT_AGGREGATE,
                           rule_source: str = "the default", crops_per_video: int = 0,
                           order: Sequence[tuple[float, ...]] | None = None) -> dict[str, Any]:
    """Metadata keys of the operating point, from validation crop scores: each video judged on
    ``crops_per_video`` crops drawn as evaluate and the app draw them (0: all), by ``rule``,
    and the video threshold picked on those videos.

    Returns the ``operating_point`` block (its ``val`` is measured later, on the saved model)
    and, for older readers, the flat keys ``aggregate``, ``threshold``, ``crop_threshold``.
    """
    aggregator(rule)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = order if order is not None else [(float(i),) for i in range(len(scores))]
    by_video = score_videos(video_ids, order, scores, rule, crops_per_video)
    label_of: dict[str, int] = {}
    for vid, label in zip(video_ids, labels, strict=True):
        if label_of.setdefault(vid, int(label)) != int(label):
            raise PipelineError(f"validation video {vid} has both real and fake crops")
    y_videos = [label_of[v] for v in by_video]
    s_videos = [by_video[v].score for v in by_video]
    threshold = choose_threshold(y_videos, s_videos)
    k_text = f"{crops_per_video} crops" if crops_per_video else "all its crops"
    source = (f"{THRESHOLD_RULE} on {len(by_video)} validation videos, each scored by the "
              f"{rule} of {k_text}, midway between two adjacent video scores")
    return {
        "operating_point": {
            "rule": rule, "rule_parameters": RULE_PARAMETERS.get(rule, {}),
            "rule_source": rule_source, "crops_per_video": int(crops_per_video),
            "draw": DRAW, "threshold": threshold, "threshold_source": source, "val": None},
        "aggregate": rule,
        "aggregate_source": rule_source,
        "threshold": threshold,
        "threshold_source": source,
        "crop_threshold": choose_threshold(labels, scores),
        "crop_threshold_source": f"{THRESHOLD_RULE} on {len(scores)} validation crops",
    }


@dataclass(frozen=True)
class OperatingPoint:
    """What evaluate and the app apply, each value with a sentence saying where it came from."""

    aggregate: str
    aggregate_source: str
    threshold: float
    threshold_source: str
    crop_threshold: float
    crop_threshold_source: str
    legacy: bool = False
    crops_per_video: int = 0  # K; 0 judges a video on all its crops
    block: dict[str, Any] | None = None  # the model's operating_point metadata, if any


def _check(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise PipelineError(f"{what} {value} is not a probability: give one in [0, 1]")
    return value


def resolve_operating_point(meta: dict[str, Any], aggregate: str | None = None,
                            threshold: float | None = None,
                            crop_threshold: float | None = None) -> OperatingPoint:
    """The rule and thresholds to apply: the command line's, else the model's, else fallbacks
    (a model saved before these keys: its crop threshold and ``mean``, with a notice)."""
    legacy = "crop_threshold" not in meta
    stored = meta.get("aggregate")
    if aggregate:
        rule, rule_src = aggregate, "the command line (--aggregate)"
    elif stored in AGGREGATORS:
        rule = stored
        rule_src = f"the model metadata ({meta.get('aggregate_source') or 'origin not recorded'})"
    else:
        rule, rule_src = DEFAULT_AGGREGATE, "a fallback: the model metadata records no rule"
    aggregator(rule)
    if threshold is not None:
        thr, thr_src = _check(threshold, "threshold"), "the command line (--threshold)"
    elif meta.get("threshold") is not None:
        thr = _check(meta["threshold"], "the model's threshold")
        origin = meta.get("threshold_source") or "origin not recorded"
        thr_src = f"the model metadata ({origin})"
        if legacy:
            thr_src += "; chosen on crops: the model predates video-level thresholds"
        elif stored and rule != stored:
            thr_src += f"; chosen for the {stored} rule, applied here to the {rule} rule"
    else:
        log.warning("model metadata holds no threshold; using %.2f", FALLBACK_THRESHOLD)
        thr = FALLBACK_THRESHOLD
        thr_src = "a fallback: the model metadata holds no threshold"
    if crop_threshold is not None:
        crop, crop_src = _check(crop_threshold, "crop threshold"), \
            "the command line (--crop-threshold)"
    elif meta.get("crop_threshold") is not None:
        crop = _check(meta["crop_threshold"], "the model's crop threshold")
        origin = meta.get("crop_threshold_source") or "origin not recorded"
        crop_src = f"the model metadata ({origin})"
    elif meta.get("threshold") is not None:
        crop = _check(meta["threshold"], "the model's threshold")
        crop_src = f"the model metadata ({meta.get('threshold_source') or 'origin not recorded'})"
    else:
        crop, crop_src = FALLBACK_THRESHOLD, "a fallback: the model metadata holds no threshold"
    if legacy and meta.get("threshold") is not None and threshold is None:
        log.warning(LEGACY_NOTICE.format(rule=rule))
    block = meta.get("operating_point") if isinstance(meta.get("operating_point"), dict) else None
    k = int(block.get("crops_per_video") or 0) if block else 0
    return OperatingPoint(rule, rule_src, thr, thr_src, crop, crop_src, legacy, k, block)


def operating_point_result(point: OperatingPoint, crops_per_video: int, split: str,
                           labels: Sequence[int], video_scores: Sequence[float],
                           by_video: dict[str, VideoScore]) -> dict[str, Any]:
    """What evaluate reports of the operating point: the model's block (or what was applied
    in its place), and ``measured``: the rates at its threshold on the evaluated videos."""
    block = dict(point.block) if point.block else {
        "rule": point.aggregate, "threshold": point.threshold,
        "note": "the model records no operating_point block (trained before it existed)"}
    used = [v.used for v in by_video.values()]
    found = [v.found for v in by_video.values()]
    measured = {"split": split, "videos": len(by_video), **rates_at(labels, video_scores,
                                                                      point.threshold),
                "crops_per_video": crops_per_video, "crops_used": int(sum(used)),
                "crops_found": int(sum(found))}
    block["measured"] = measured
    if crops_per_video == 0:
        block["warning"] = ("every crop of a video is used (crops_per_video 0): the rule's "
                            "score then depends on how many crops each video has")
    return block

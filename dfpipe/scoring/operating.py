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
from dfpipe.scoring.crops import AGGREGATORS, aggregate_videos, aggregator

log = logging.getLogger(__name__)

DEFAULT_AGGREGATE = "mean"
FALLBACK_THRESHOLD = 0.5
THRESHOLD_RULE = "max Youden's J (TPR - FPR, i.e. balanced accuracy)"
LEGACY_NOTICE = ("model metadata predates video-level thresholds (no 'crop_threshold'): its "
                 "threshold was chosen on validation crops and is used for videos too, with "
                 "the {rule} rule; retrain to get a threshold chosen on validation videos")


def choose_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The score cut that maximises TPR - FPR on validation (needs both classes)."""
    from sklearn.metrics import roc_curve

    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        raise PipelineError("validation has one class only: cannot choose a threshold")
    fpr, tpr, thresholds = roc_curve(y, np.asarray(scores, dtype=np.float64))
    finite = np.isfinite(thresholds)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def choose_operating_point(video_ids: Sequence[str], labels: Sequence[int],
                           scores: Sequence[float], rule: str = DEFAULT_AGGREGATE,
                           rule_source: str = "the default") -> dict[str, Any]:
    """Metadata keys of the operating point, from validation crop scores: the crops are
    aggregated per video by ``rule`` and the video threshold is picked on those videos."""
    aggregator(rule)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    by_video = aggregate_videos(video_ids, scores, rule)
    label_of: dict[str, int] = {}
    for vid, label in zip(video_ids, labels, strict=True):
        if label_of.setdefault(vid, int(label)) != int(label):
            raise PipelineError(f"validation video {vid} has both real and fake crops")
    y_videos = [label_of[v] for v in by_video]
    s_videos = [by_video[v] for v in by_video]
    return {
        "aggregate": rule,
        "aggregate_source": rule_source,
        "threshold": choose_threshold(y_videos, s_videos),
        "threshold_source": (f"{THRESHOLD_RULE} on {len(by_video)} validation videos, each "
                             f"scored by the {rule} of its crops"),
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
    return OperatingPoint(rule, rule_src, thr, thr_src, crop, crop_src, legacy)

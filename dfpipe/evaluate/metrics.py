"""Binary detection metrics at a fixed threshold, with bootstrap intervals.

Every number comes from scikit-learn except the equal error rate, which is read off
sklearn's ROC curve. A metric that a set of labels cannot define (AUC with one class,
precision when nothing is predicted fake) is None, with the reason in ``undefined``,
rather than a warning and a misleading 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from dfpipe.core.labels import CLASS_NAMES, FAKE, REAL

log = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
    "average_precision", "eer", "log_loss", "brier_score",
)
CI_METRICS: tuple[str, ...] = ("roc_auc", "accuracy")
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
CALIBRATION_BINS = 10
_EPS = 1e-7
_BOTH = "needs both real and fake samples; this set has only {}"


def _arrays(y_true: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    if y.size == 0:
        raise ValueError("no samples to measure")
    if not np.isin(y, (REAL, FAKE)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("scores must be probabilities P(fake) in [0, 1]")
    return y, s


def predict(scores: Sequence[float] | np.ndarray, threshold: float) -> np.ndarray:
    """Class decisions: fake (1) when P(fake) >= threshold, else real (0)."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def equal_error_rate(y_true: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """(EER, threshold nearest to it): where false-positive and false-negative rates meet.

    The ROC's points are joined by straight lines, so the crossing of FPR and FNR = 1 - TPR
    is interpolated on the segment where FNR - FPR changes sign; the threshold reported is
    that of the ROC point closest to the crossing.
    """
    y, s = _arrays(y_true, scores)
    fpr, tpr, thresholds = skm.roc_curve(y, s, pos_label=FAKE, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr
    after = int(np.argmax(diff <= 0))
    if after == 0:
        eer = float(fpr[0])
    else:
        before = after - 1
        t = diff[before] / (diff[before] - diff[after])
        eer = float(fpr[before] + t * (fpr[after] - fpr[before]))
    nearest = int(np.argmin(np.abs(diff)))
    return eer, float(min(thresholds[nearest], 1.0))


def binary_metrics(y_true: Sequence[int], scores: Sequence[float],
                   threshold: float) -> dict[str, Any]:
    """All metrics at ``threshold`` plus counts, confusion matrix and undefined reasons."""
    y, s = _arrays(y_true, scores)
    pred = predict(s, threshold)
    n_real, n_fake = int((y == REAL).sum()), int((y == FAKE).sum())
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[REAL, FAKE]).ravel())
    undefined: dict[str, str] = {}
    values: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    values["accuracy"] = skm.accuracy_score(y, pred)
    values["log_loss"] = skm.log_loss(y, np.clip(s, _EPS, 1 - _EPS), labels=[REAL, FAKE])
    values["brier_score"] = skm.brier_score_loss(y, s, pos_label=FAKE)
    both = n_real > 0 and n_fake > 0
    if both:
        values["balanced_accuracy"] = skm.balanced_accuracy_score(y, pred)
        values["roc_auc"] = skm.roc_auc_score(y, s)
        values["average_precision"] = skm.average_precision_score(y, s, pos_label=FAKE)
        values["eer"], eer_threshold = equal_error_rate(y, s)
    else:
        only = CLASS_NAMES[REAL] if n_real else CLASS_NAMES[FAKE]
        eer_threshold = None
        for name in ("balanced_accuracy", "roc_auc", "average_precision", "eer"):
            undefined[name] = _BOTH.format(only)
    if tp + fp > 0:
        values["precision"] = skm.precision_score(y, pred, pos_label=FAKE)
    else:
        undefined["precision"] = "nothing was predicted fake at this threshold"
    if n_fake > 0:
        values["recall"] = skm.recall_score(y, pred, pos_label=FAKE)
    else:
        undefined["recall"] = "there are no fake samples"
    if "precision" in undefined or "recall" in undefined:
        undefined["f1"] = "precision or recall is undefined"
    else:
        values["f1"] = skm.f1_score(y, pred, pos_label=FAKE, zero_division=0.0)
    return {
        "count": int(y.size), "real": n_real, "fake": n_fake,
        "threshold": float(threshold),
        "metrics": {k: None if v is None else float(v) for k, v in values.items()},
        "eer_threshold": eer_threshold,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "undefined": undefined,
    }


def confusion_array(cm: dict[str, int]) -> np.ndarray:
    """The confusion dict as sklearn's 2x2 layout: rows true (real, fake), columns predicted."""
    return np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]], dtype=np.int64)


def bootstrap_ci(y_true: Sequence[int], scores: Sequence[float], threshold: float,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 clusters: Sequence[str] | None = None,
                 confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Percentile bootstrap intervals for ROC-AUC and accuracy.

    With ``clusters`` (the identity group of each frame or video) whole clusters are
    resampled, since frames of one video, and a real video and its fakes, are correlated and
    resampling them one by one would make intervals too narrow. Resamples holding a single
    class are skipped for AUC and counted.
    """
    y, s = _arrays(y_true, scores)
    rng = np.random.default_rng(seed)
    keys = np.arange(y.size) if clusters is None else np.unique(
        np.asarray(clusters, dtype=str), return_inverse=True)[1]
    if len(keys) != y.size:
        raise ValueError(f"{len(keys)} clusters for {y.size} samples")
    order = np.argsort(keys, kind="stable")
    sizes = np.bincount(keys)
    starts = np.cumsum(sizes) - sizes
    correct = (predict(s, threshold) == y).astype(np.float64)
    aucs, accs = [], []
    for _ in range(resamples):
        picked = rng.integers(0, sizes.size, size=sizes.size)
        lens = sizes[picked]
        offset = np.repeat(starts[picked] - (np.cumsum(lens) - lens), lens)
        idx = order[np.arange(lens.sum()) + offset]
        accs.append(correct[idx].mean())
        yi = y[idx]
        if yi.min() != yi.max():
            aucs.append(skm.roc_auc_score(yi, s[idx]))
    tail = (1.0 - confidence) / 2 * 100
    result: dict[str, Any] = {
        "resamples": int(resamples), "seed": int(seed), "confidence": confidence,
        "unit": "cluster" if clusters is not None else "sample",
        "clusters": int(sizes.size),
        "skipped_one_class": resamples - len(aucs),
    }
    samples = {"accuracy": accs, "roc_auc": aucs}
    for name in CI_METRICS:
        values = samples[name]
        result[name] = ([float(v) for v in np.percentile(values, [tail, 100 - tail])]
                        if values else None)
    return result


def calibration(y_true: Sequence[int], scores: Sequence[float],
                bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
    """Reliability-diagram points of the non-empty bins: mean score, fraction fake, size.

    Bins are sklearn calibration_curve's uniform bins (right-closed: (0.1, 0.2] ...), and
    the sizes are counted the same way so each point has its own count.
    """
    y, s = _arrays(y_true, scores)
    observed, predicted = calibration_curve(y, s, n_bins=bins, strategy="uniform",
                                            pos_label=FAKE)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], s), minlength=bins)
    return {"predicted": predicted.tolist(), "observed": observed.tolist(),
            "count": counts[counts > 0].tolist(), "edges": edges.tolist()}

"""Thresholds are chosen on validation: crops and videos each get their own."""

import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.scoring.operating import choose_operating_point, choose_threshold


def test_threshold_maximises_balanced_accuracy_on_validation() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.05, 0.1, 0.2, 0.62, 0.3, 0.7, 0.8, 0.9]
    threshold = choose_threshold(labels, scores)
    predicted = np.asarray(scores) >= threshold
    tpr = predicted[4:].mean()
    fpr = predicted[:4].mean()
    assert (tpr, fpr) == (0.75, 0.0) and 0.62 < threshold <= 0.7
    with pytest.raises(PipelineError, match="one class"):
        choose_threshold([1, 1], [0.2, 0.3])


def test_video_threshold_differs_from_the_crop_threshold_when_it_should() -> None:
    """Crops of one video disagree; the video threshold is chosen on their mean."""
    ids = ["a", "a", "b", "b", "c", "c", "d", "d"]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.7, 0.2, 0.3, 0.35, 0.95, 0.6, 0.5]
    point = choose_operating_point(ids, labels, scores, "mean", "test")
    # video means: a 0.4, b 0.25 (real); c 0.65, d 0.55 (fake): any cut in (0.4, 0.55] is perfect
    assert 0.4 < point["threshold"] <= 0.55
    assert point["crop_threshold"] == choose_threshold(labels, scores)
    assert point["aggregate"] == "mean" and "4 validation videos" in point["threshold_source"]
    maxed = choose_operating_point(ids, labels, scores, "max", "test")
    # video maxima: a 0.7, b 0.3; c 0.95, d 0.6: best cut 0.95 (TPR .5, FPR 0) or 0.6..0.7
    assert maxed["threshold"] != point["threshold"] and maxed["aggregate"] == "max"

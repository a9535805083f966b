"""Metrics against numbers worked out by hand on an 8-sample example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dfpipe.evaluate import metrics

# Five real, three fake. At threshold 0.5:
#   real 0.1 0.2 0.45 -> real (tn 3), real 0.6 0.7 -> fake (fp 2)
#   fake 0.4 -> real (fn 1),          fake 0.8 0.9 -> fake (tp 2)
Y = [0, 0, 0, 0, 0, 1, 1, 1]
S = [0.1, 0.2, 0.45, 0.6, 0.7, 0.4, 0.8, 0.9]

# accuracy 5/8; balanced (3/5 + 2/3) / 2; precision 2/4; recall 2/3; F1 2tp/(2tp+fp+fn) = 4/7
# ROC-AUC: of the 15 (fake, real) pairs the fake wins 2 (0.4) + 5 (0.8) + 5 (0.9) = 12 -> 0.8
# AP: ranked 0.9F 0.8F 0.7R 0.6R 0.45R 0.4F ...: precision at each fake 1, 1, 3/6 -> 2.5/3
# log loss: -(ln .9 + ln .8 + ln .55 + ln .4 + ln .3 + ln .4 + ln .8 + ln .9) / 8
#   = (0.1053605 + 0.2231436 + 0.5978370 + 0.9162907 + 1.2039728 + 0.9162907 + 0.2231436
#      + 0.1053605) / 8 = 4.2913994 / 8 = 0.5364249
# Brier: (.01 + .04 + .2025 + .36 + .49 + .36 + .04 + .01) / 8 = 1.5125 / 8 = 0.1890625
HAND = {
    "accuracy": 0.625, "balanced_accuracy": (0.6 + 2 / 3) / 2, "precision": 0.5,
    "recall": 2 / 3, "f1": 4 / 7, "roc_auc": 0.8, "average_precision": 2.5 / 3,
    "eer": 1 / 3, "log_loss": 0.5364249, "brier_score": 0.1890625,
}


def test_every_metric_equals_the_hand_worked_value():
    result = metrics.binary_metrics(Y, S, threshold=0.5)
    assert result["confusion_matrix"] == {"tn": 3, "fp": 2, "fn": 1, "tp": 2}
    assert (result["count"], result["real"], result["fake"]) == (8, 5, 3)
    assert set(result["metrics"]) == set(HAND)
    for name, value in HAND.items():
        assert result["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert result["undefined"] == {}


def test_equal_error_rate_is_interpolated_where_fpr_meets_fnr():
    # ROC points (fpr, fnr) by threshold: 0.7 -> (0.2, 1/3), 0.6 -> (0.4, 1/3).
    # FNR - FPR goes from +2/15 to -1/15 on that segment, where FNR stays 1/3:
    # the rates meet at FPR = FNR = 1/3; the nearer point is threshold 0.6 (|diff| 1/15).
    eer, thr = metrics.equal_error_rate(Y, S)
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.6)


def test_equal_error_rate_of_perfect_and_of_inverted_scores():
    assert metrics.equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == pytest.approx(0.0)
    assert metrics.equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == pytest.approx(1.0)
    # 2 real, 2 fake, one of each on the wrong side: FPR = FNR = 1/2 at threshold 0.6
    eer, _ = metrics.equal_error_rate([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9])
    assert eer == pytest.approx(0.5)


def test_threshold_moves_decisions_at_or_above_it():
    # at 0.7: real 0.7 still fake (>=), real 0.6 now real; fake 0.8, 0.9 fake
    result = metrics.binary_metrics(Y, S, threshold=0.7)
    assert result["confusion_matrix"] == {"tn": 4, "fp": 1, "fn": 1, "tp": 2}
    assert result["metrics"]["accuracy"] == pytest.approx(6 / 8)
    assert result["metrics"]["roc_auc"] == pytest.approx(0.8)


def test_one_class_set_leaves_pair_metrics_undefined_with_reasons():
    result = metrics.binary_metrics([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.9], threshold=0.5)
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx(0.75)
    # log loss of four reals: -(ln .9 + ln .8 + ln .7 + ln .1) / 4
    assert m["log_loss"] == pytest.approx(-(math.log(0.9 * 0.8 * 0.7 * 0.1)) / 4)
    for name in ("balanced_accuracy", "roc_auc", "average_precision", "eer", "recall", "f1"):
        assert m[name] is None
        assert name in result["undefined"]
    assert "only real" in result["undefined"]["roc_auc"]
    assert m["precision"] == pytest.approx(0.0)  # one real called fake: tp 0 of 1 call
    assert result["confusion_matrix"] == {"tn": 3, "fp": 1, "fn": 0, "tp": 0}
    assert result["eer_threshold"] is None


def test_precision_is_undefined_when_nothing_is_called_fake():
    result = metrics.binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], threshold=0.5)
    assert result["metrics"]["precision"] is None
    assert result["metrics"]["f1"] is None
    assert result["metrics"]["recall"] == pytest.approx(0.0)
    assert result["metrics"]["roc_auc"] == pytest.approx(1.0)
    assert set(result["undefined"]) == {"precision", "f1"}


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no samples"):
        metrics.binary_metrics([], [], 0.5)
    with pytest.raises(ValueError, match="2 labels for 3 scores"):
        metrics.binary_metrics([0, 1], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(ValueError, match="probabilities"):
        metrics.binary_metrics([0, 1], [0.1, 1.2], 0.5)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 60)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    a = metrics.bootstrap_ci(y, s, 0.5, resamples=300, seed=7)
    b = metrics.bootstrap_ci(y, s, 0.5, resamples=300, seed=7)
    c = metrics.bootstrap_ci(y, s, 0.5, resamples=300, seed=8)
    assert a == b and a != c
    point = metrics.binary_metrics(y, s, 0.5)["metrics"]
    for name in ("accuracy", "roc_auc"):
        lo, hi = a[name]
        assert lo < point[name] < hi
        assert hi - lo < 0.35


def test_perfect_separation_gives_a_degenerate_interval():
    ci = metrics.bootstrap_ci([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 0.5,
                              resamples=200, seed=0)
    assert ci["accuracy"] == [1.0, 1.0]
    assert ci["roc_auc"] == [1.0, 1.0]
    # a resample draws one class only with chance 2 * 0.5^6 = 1/32: some of 200 are skipped
    assert 0 < ci["skipped_one_class"] < 30


def test_cluster_bootstrap_resamples_whole_videos():
    # two videos of 50 frames: one all right, one all wrong -> accuracy 0.5.
    # Resampling videos gives accuracy 0, 0.5 or 1 (each video picked twice with chance 1/4),
    # so the 95% interval is [0, 1]; resampling frames alone gives about 0.5 +- 0.1.
    y = np.array([1] * 50 + [1] * 50)
    s = np.array([0.9] * 50 + [0.1] * 50)
    videos = ["a"] * 50 + ["b"] * 50
    by_video = metrics.bootstrap_ci(y, s, 0.5, resamples=400, seed=1, clusters=videos)
    by_frame = metrics.bootstrap_ci(y, s, 0.5, resamples=400, seed=1)
    assert by_video["accuracy"] == [0.0, 1.0]
    assert by_frame["accuracy"][1] - by_frame["accuracy"][0] < 0.3
    assert by_video["roc_auc"] is None and by_video["skipped_one_class"] == 400


def test_calibration_bins_hold_mean_score_share_fake_and_count():
    # uniform bins, right-closed: 0.05, 0.1 -> (0, 0.1]; 0.15 -> (0.1, 0.2]; 0.95 -> (0.9, 1]
    cal = metrics.calibration([0, 0, 1, 1], [0.05, 0.1, 0.15, 0.95], bins=10)
    assert cal["predicted"] == pytest.approx([0.075, 0.15, 0.95])
    assert cal["observed"] == pytest.approx([0.0, 1.0, 1.0])
    assert cal["count"] == [2, 1, 1]
    one_class = metrics.calibration([0, 0], [0.32, 0.35], bins=10)
    assert one_class["observed"] == [0.0] and one_class["count"] == [2]

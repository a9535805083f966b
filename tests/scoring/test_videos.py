"""Videos are judged on K crops drawn evenly in time, so a threshold keeps its meaning."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.scoring.operating import choose_operating_point
from dfpipe.scoring.verdict import judge
from dfpipe.scoring.videos import draw_crops, rates_at, score_videos


def synthetic_videos(n_videos: int, crops: int, seed: int) -> tuple[list, list, list, list]:
    """Real videos' crops score around 0.3, fakes' around 0.6: per-crop noise, so a rule
    like max grows with the number of crops a video is judged on."""
    rng = np.random.default_rng(seed)
    ids, order, scores, labels = [], [], [], []
    for v in range(n_videos):
        label = v % 2
        for i in range(crops):
            ids.append(f"v{v}")
            order.append((float(i), 0.0))
            scores.append(float(np.clip(rng.normal(0.3 + 0.3 * label, 0.15), 0, 1)))
            labels.append(label)
    return ids, order, scores, labels


def video_rates(ids, order, scores, labels, rule, k, threshold):
    judged = score_videos(ids, order, scores, rule, k)
    label_of = dict(zip(ids, labels, strict=True))
    return rates_at([label_of[v] for v in judged], [s.score for s in judged.values()],
                    threshold)


def test_the_max_rules_false_positive_rate_no_longer_moves_with_the_count():
    val = synthetic_videos(400, 32, seed=0)
    point = choose_operating_point(val[0], val[3], val[2], "max", "test", 8, val[1])
    threshold = point["operating_point"]["threshold"]
    at_val = video_rates(*val, "max", 8, threshold)["fpr"]
    long_videos = synthetic_videos(400, 128, seed=1)  # four times the crops per video
    judged_on_k = video_rates(*long_videos, "max", 8, threshold)["fpr"]
    judged_on_all = video_rates(*long_videos, "max", 0, threshold)["fpr"]
    assert abs(judged_on_k - at_val) < 0.06
    assert judged_on_all > at_val + 0.2  # what happened before: every crop of a longer video


def test_the_draw_is_evenly_spaced_in_time_whatever_the_order_given():
    order = [(float(f), 0.0) for f in (9, 0, 5, 3, 1, 7, 2, 8, 4, 6)]
    picked = draw_crops(order, 3)
    assert sorted(order[i][0] for i in picked) == [1.0, 4.0, 8.0]
    assert draw_crops(order, 0) == list(range(10)) == draw_crops(order, 10)


def test_threshold_sits_midway_between_two_validation_video_scores():
    ids = ["a", "b", "c", "d"]
    point = choose_operating_point(ids, [0, 0, 1, 1], [0.2, 0.4, 0.6, 0.9], "mean", "t", 1)
    assert point["threshold"] == pytest.approx(0.5)
    block = point["operating_point"]
    assert block["crops_per_video"] == 1 and block["rule"] == "mean" and block["val"] is None
    assert "evenly spaced in time" in block["draw"]


def test_the_app_judges_a_video_on_the_same_k_crops_as_evaluate():
    ids, order, scores, _ = synthetic_videos(1, 20, seed=3)
    faces = [{"frame": int(o[0]), "face": 0, "score": s, "call": "real"}
             for o, s in zip(order, scores, strict=True)][::-1]  # any order
    judged = judge(faces, 0.5, "max", 20, 0.9, None, crops_per_video=6)
    expected = score_videos(ids, order, scores, "max", 6)["v0"]
    assert judged["score"] == pytest.approx(expected.score)
    assert (judged["crops_used"], judged["crops_found"]) == (6, 20) == (expected.used,
                                                                       expected.found)

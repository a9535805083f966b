"""Scoring crops in batches and aggregating frame scores per video, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.scoring.crops import (
    AGGREGATORS,
    aggregate_confident,
    aggregator,
    score_crops,
)
from dfpipe.scoring.videos import score_videos

keras = pytest.importorskip("keras")


def brightness_model(size: int | None = None, dropout: float = 0.0) -> keras.Model:
    """P(fake) = sigmoid(10 * g - 5), g the crop's mean intensity / 255."""
    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    dense = keras.layers.Dense(1, activation="sigmoid")
    out = dense(x)
    dense.set_weights([np.full((3, 1), 10 / 3, np.float32), np.array([-5.0], np.float32)])
    return keras.Model(inp, out)


def expected(images: list[np.ndarray]) -> np.ndarray:
    g = np.array([img.mean() / 255 for img in images])
    return 1 / (1 + np.exp(-(10 * g - 5)))


class CountingModel:
    """Delegates to a Keras model and records the shape of every batch it is given."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.input_shape = model.input_shape
        self.batches: list[tuple[int, ...]] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.shape)
        return self.model.predict_on_batch(x)


def flat(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_scores_follow_brightness_in_order_whatever_the_batch_size():
    images = [flat(v) for v in (0, 40, 127, 200, 255, 90, 160)]
    model = brightness_model()
    small = score_crops(model, iter(images), batch_size=3)
    large = score_crops(model, images, batch_size=64)
    np.testing.assert_allclose(small, expected(images), atol=1e-5)
    np.testing.assert_allclose(large, small, atol=1e-6)
    assert small.dtype == np.float64 and small.shape == (7,)


def test_batches_are_cut_at_batch_size_and_where_the_crop_size_changes():
    images = [flat(10, 8), flat(20, 8), flat(30, 12), flat(40, 12), flat(50, 12), flat(60, 8)]
    model = CountingModel(brightness_model())
    scores = score_crops(model, images, batch_size=2)
    assert [b[:3] for b in model.batches] == [(2, 8, 8), (2, 12, 12), (1, 12, 12), (1, 8, 8)]
    np.testing.assert_allclose(scores, expected(images), atol=1e-5)


def test_inference_mode_makes_dropout_inactive():
    model = brightness_model(dropout=0.9)
    images = [flat(v) for v in (30, 220, 140)]
    first = score_crops(model, images, batch_size=3)
    np.testing.assert_allclose(first, expected(images), atol=1e-5)
    np.testing.assert_allclose(score_crops(model, images, batch_size=3), first)


def test_two_class_softmax_output_gives_the_fake_column():
    inp = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    # logits (0, 10g - 5): softmax's second column is sigmoid(10g - 5), P(fake)
    dense.set_weights([np.concatenate([np.zeros((3, 1)), np.full((3, 1), 10 / 3)], axis=1),
                       np.array([0.0, -5.0])])
    images = [flat(50), flat(230)]
    scores = score_crops(keras.Model(inp, out), images)
    np.testing.assert_allclose(scores, expected(images), atol=1e-5)


def test_a_crop_of_the_wrong_size_for_a_fixed_input_model_is_one_clear_error():
    with pytest.raises(PipelineError, match=r"crops are 8x8 but the model takes 16x16"):
        score_crops(brightness_model(size=16), [flat(10, 8)])


def test_no_images_gives_no_scores_and_grey_images_are_refused():
    assert score_crops(brightness_model(), []).shape == (0,)
    with pytest.raises(PipelineError, match="HxWx3"):
        score_crops(brightness_model(), [np.zeros((8, 8), np.uint8)])


def by_video(ids: list[str], scores: list[float], rule: str) -> dict[str, float]:
    """Each video's score from all its crops (K = 0), the crops in the given order."""
    order = [(float(i),) for i in range(len(ids))]
    return {v: s.score for v, s in score_videos(ids, order, scores, rule, 0).items()}


def test_videos_are_scored_by_id_in_order_of_first_appearance():
    ids = ["A", "B", "A", "B", "A"]
    scores = [0.1, 0.6, 0.2, 0.7, 0.9]
    # A: 0.1, 0.2, 0.9 -> mean 1.2/3 = 0.4, median 0.2, max 0.9; B: 0.6, 0.7 -> mean 0.65
    mean = by_video(ids, scores, "mean")
    assert list(mean) == ["A", "B"]
    assert mean == pytest.approx({"A": 0.4, "B": 0.65})
    assert by_video(ids, scores, "median") == pytest.approx({"A": 0.2, "B": 0.65})
    assert by_video(ids, scores, "max") == pytest.approx({"A": 0.9, "B": 0.7})
    with pytest.raises(ValueError, match="4 video ids, 5 times, 5 scores"):
        score_videos(ids[:4], [(0.0,)] * 5, scores, "mean", 0)


def test_trimmed_mean_cuts_ten_percent_from_each_end():
    ten = [0.0] + [0.1] * 8 + [1.0]
    # 10 scores: one cut from each end -> eight 0.1s -> 0.1 (plain mean 1.8 / 10 = 0.18)
    assert AGGREGATORS["trimmed_mean"](ten) == pytest.approx(0.1)
    assert AGGREGATORS["mean"](ten) == pytest.approx(0.18)
    nine = [0.0] + [0.1] * 7 + [1.0]
    # 9 scores: 10% of 9 rounds down to 0, nothing cut -> 1.7 / 9
    assert AGGREGATORS["trimmed_mean"](nine) == pytest.approx(1.7 / 9)


@pytest.mark.parametrize(("scores", "want"), [
    # 32 frames, 13 above 0.8: 13 > 32 // 2.5 = 12 and 13 > 11 -> mean of those = 0.9
    ([0.9] * 13 + [0.5] * 19, 0.9),
    # 12 above 0.8: 12 > 12 fails; no score < 0.2 -> plain mean (10.8 + 10) / 32 = 0.65
    ([0.9] * 12 + [0.5] * 20, 0.65),
    # 20 frames, 19 below 0.2: 19 > 0.9 * 20 = 18 -> mean of those = 0.1
    ([0.1] * 19 + [0.7], 0.1),
    # 18 below 0.2: 18 > 18 fails -> plain mean (1.8 + 1.4) / 20 = 0.16
    ([0.1] * 18 + [0.7] * 2, 0.16),
    # 10 crops: the 11 of 32 scales to round(11 * 10 / 32) = 3; 9 > 10 // 2.5 = 4 and 9 > 3
    # -> mean of those = 0.95 (the winner's fixed 11 would never fire below 12 crops)
    ([0.95] * 9 + [0.5], 0.95),
    # 10 crops, 3 above 0.8: 3 > 3 fails -> plain mean (2.85 + 3.5) / 10 = 0.635
    ([0.95] * 3 + [0.5] * 7, 0.635),
])
def test_confident_rule_matches_the_dfdc_winner(scores, want):
    assert aggregate_confident(scores) == pytest.approx(want)
    assert by_video(["v"] * len(scores), scores, "confident")["v"] == pytest.approx(want)


def test_unknown_rule_and_empty_scores_are_refused():
    with pytest.raises(PipelineError, match="unknown aggregation rule 'vote'.*confident"):
        aggregator("vote")
    for name, fn in AGGREGATORS.items():
        with pytest.raises(ValueError, match="empty"):
            fn([])
        assert fn([0.3]) == pytest.approx(0.3), name

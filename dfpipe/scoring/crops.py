"""Crops -> P(fake), and frame scores -> one score per video by a named rule.

Shared by evaluate.py and the app, so a video is scored the same way in both. The model
takes raw RGB crops (uint8 or float, 0..255); resizing and pixel scaling are layers inside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats
from tqdm import tqdm

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import FAKE

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
TRIM_FRACTION = 0.1
CONFIDENT_FAKE = 0.8
CONFIDENT_REAL = 0.2
CONFIDENT_MIN_FAKES = 11  # of CONFIDENT_FRAMES crops: scaled to the count a video is judged on
CONFIDENT_FRAMES = 32
CONFIDENT_FAKE_DIVISOR = 2.5
CONFIDENT_REAL_FRACTION = 0.9


def score_crops(model: Any, images: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
                total: int | None = None, progress: bool = False) -> np.ndarray:
    """P(fake) for each crop, in order, predicting batches of equal-size crops in inference mode.

    ``images`` may be a generator, so a large split is never held in memory at once;
    a batch is cut early when the crop size changes, since only equal shapes stack.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    scores: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    with tqdm(total=total, desc="scoring crops", unit="crop", disable=not progress) as bar:
        for image in images:
            image = _check_image(image)
            if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
                scores.append(_predict(model, batch))
                bar.update(len(batch))
                batch = []
            batch.append(image)
        if batch:
            scores.append(_predict(model, batch))
            bar.update(len(batch))
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise PipelineError(f"a crop must be an RGB image HxWx3, got shape {image.shape}")
    return image


def _predict(model: Any, batch: list[np.ndarray]) -> np.ndarray:
    x = np.stack(batch).astype(np.float32)
    _check_input_size(model, x.shape)
    out = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, FAKE]
    out = out.reshape(len(batch), -1)
    if out.shape[1] != 1:
        raise PipelineError(f"the model gives {out.shape[1]} outputs per crop; expected one "
                            "P(fake) (sigmoid) or two class probabilities [real, fake]")
    return out[:, 0]


def _check_input_size(model: Any, shape: tuple[int, ...]) -> None:
    expected = getattr(model, "input_shape", None)
    if not isinstance(expected, tuple) or len(expected) != 4:
        return
    for want, got, name in zip(expected[1:3], shape[1:3], ("height", "width"), strict=True):
        if want is not None and want != got:
            raise PipelineError(
                f"crops are {shape[1]}x{shape[2]} but the model takes {expected[1]}x{expected[2]}"
                f" ({name} differs): re-crop at the model's size or use a model that resizes")


def _scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("cannot aggregate an empty list of scores")
    return arr


def aggregate_mean(scores: Sequence[float] | np.ndarray) -> float:
    """Plain average of the frame scores."""
    return float(np.mean(_scores(scores)))


def aggregate_median(scores: Sequence[float] | np.ndarray) -> float:
    """Median: robust to a few frames with a bad face crop."""
    return float(np.median(_scores(scores)))


def aggregate_trimmed_mean(scores: Sequence[float] | np.ndarray) -> float:
    """Mean after cutting 10% of the frames from each end (scipy trim_mean, TRIM_FRACTION).

    With fewer than 10 frames nothing is cut and this equals the mean.
    """
    return float(stats.trim_mean(_scores(scores), TRIM_FRACTION))


def aggregate_max(scores: Sequence[float] | np.ndarray) -> float:
    """Highest frame score: a video is as fake as its most fake-looking frame."""
    return float(np.max(_scores(scores)))


def aggregate_confident(scores: Sequence[float] | np.ndarray) -> float:
    """The DFDC winner's "confident strategy" (Selim Seferbekov, 1st place, DFDC 2020).

    Exactly as ``confident_strategy(pred, t=0.8)`` in kernel_utils.py of
    https://github.com/selimsef/dfdc_deepfake_challenge, with n frame scores:

    - fakes = number of scores > 0.8; if fakes > n // 2.5 (floor of n/2.5) and fakes > 11,
      return the mean of the scores > 0.8 (many frames confidently fake);
    - else if more than 0.9 * n scores are < 0.2, return the mean of the scores < 0.2
      (nearly every frame confidently real);
    - else return the mean of all scores.

    The constant 11 comes from his 32 frames per video; here it is scaled to the n crops a
    video is judged on (``round(11 * n / 32)``, :func:`confident_min_fakes`), so the rule means
    the same with 8 crops as with 32, and is his exactly at 32.
    """
    arr = _scores(scores)
    n = arr.size
    fakes = arr > CONFIDENT_FAKE
    reals = arr < CONFIDENT_REAL
    if fakes.sum() > n // CONFIDENT_FAKE_DIVISOR and fakes.sum() > confident_min_fakes(n):
        return float(np.mean(arr[fakes]))
    if reals.sum() > CONFIDENT_REAL_FRACTION * n:
        return float(np.mean(arr[reals]))
    return float(np.mean(arr))


def confident_min_fakes(n: int) -> int:
    """How many confident fakes the confident rule needs to exceed among ``n`` crops."""
    return int(round(CONFIDENT_MIN_FAKES * n / CONFIDENT_FRAMES))


AGGREGATORS: dict[str, Callable[[Sequence[float] | np.ndarray], float]] = {
    "mean": aggregate_mean,
    "median": aggregate_median,
    "trimmed_mean": aggregate_trimmed_mean,
    "max": aggregate_max,
    "confident": aggregate_confident,
}


RULE_PARAMETERS: dict[str, dict[str, Any]] = {
    "trimmed_mean": {"cut_each_end": TRIM_FRACTION},
    "confident": {"fake_above": CONFIDENT_FAKE, "real_below": CONFIDENT_REAL,
                  "min_fakes": f"round({CONFIDENT_MIN_FAKES} * n / {CONFIDENT_FRAMES}) for a "
                               "video judged on n crops"},
}


def aggregator(rule: str) -> Callable[[Sequence[float] | np.ndarray], float]:
    """The aggregation function called ``rule``; PipelineError naming the choices if unknown."""
    try:
        return AGGREGATORS[rule]
    except KeyError:
        raise PipelineError(f"unknown aggregation rule {rule!r}: choose one of "
                            f"{', '.join(AGGREGATORS)}") from None

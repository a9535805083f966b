"""Self-blended training data: every real training crop brings its own fake, made on the fly.

With ``train.py --sbi`` the training set is built from units of two images. A *pair* is a
real crop and the self-blended fake made from it
(:func:`dfpipe.train.sbi.blend.self_blend`, the pair's
real being the blend's target), labelled real and fake; both go through the same training
augmentation draw, so the two differ only by the blend, and they always share a batch, as
in the paper. With ``--sbi-ratio`` below 1 the split's own fake crops join, two to a unit.

``sbi_ratio`` R is the share of the fake examples of an epoch that are self-blended. An
epoch holds every real training crop once, its self-blended twin, and
``round(N_real * (1 - R) / R)`` of the split's fake crops (rounded down to an even number),
drawn afresh each epoch without replacement (cycling only if the split has fewer). R = 1
(the default) ignores the split's fakes: a split whose training part has no fake crop works.
Fresh blends are drawn every epoch (one seed per unit and epoch), so no two epochs see the
same fakes. Validation data never passes through here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import FAKE, REAL
from dfpipe.core.splittable import Crop, load_split
from dfpipe.train.inputs import SEED_RANGE, CropLoader, draw_per_video
from dfpipe.train.sbi.blend import BLEND_RATIOS, self_blend
from dfpipe.train.sbi.landmarks import LandmarkReport, Landmarks, cache_location, resolve_landmarks

log = logging.getLogger(__name__)

PAIR, FAKES = 0, 1  # unit kinds: (real crop, its self-blend) or two of the split's fakes


def read_sbi_train(root: Path, ratio: float) -> list[Crop]:
    """The training crops self-blended training reads: real ones are required; fake ones
    only when ``ratio`` < 1 mixes them in."""
    if not 0.0 < ratio <= 1.0:
        raise PipelineError(f"--sbi-ratio must be in (0, 1], got {ratio}")
    crops = load_split(root, "train")
    real = sum(c.label == REAL for c in crops)
    fake = len(crops) - real
    if real == 0:
        raise PipelineError(f"split 'train' under {root} has no real crops: self-blended "
                            "training makes its fakes from real crops")
    if ratio < 1.0 and fake == 0:
        raise PipelineError(f"--sbi-ratio {ratio} mixes in the split's fake crops but 'train' "
                            f"under {root} has none: use --sbi-ratio 1 (self-blended fakes only)")
    return crops


@dataclass(frozen=True)
class SBIPlan:
    """What one epoch of self-blended training holds, for the log and the metadata."""

    ratio: float
    real: int
    self_blended: int
    split_fakes_per_epoch: int
    split_fakes_available: int
    pairs_per_batch: int

    def labels(self) -> list[int]:
        """The labels of one epoch, for class weights."""
        return [REAL] * self.real + [FAKE] * (self.self_blended + self.split_fakes_per_epoch)


def plan(crops: Sequence[Crop], ratio: float, batch_size: int) -> SBIPlan:
    """Counts of one epoch (see the module docstring for ``ratio``)."""
    if batch_size < 2:
        raise PipelineError(f"--sbi needs a batch of at least 2 (a real crop and its blend), "
                            f"got {batch_size}")
    real = sum(c.label == REAL for c in crops)
    fakes = len(crops) - real
    extra = 0 if ratio >= 1.0 else int(round(real * (1.0 - ratio) / ratio)) // 2 * 2
    return SBIPlan(ratio=ratio, real=real, self_blended=real, split_fakes_per_epoch=extra,
                   split_fakes_available=fakes, pairs_per_batch=batch_size // 2)


def settings(sbi_plan: SBIPlan, report: LandmarkReport) -> dict[str, Any]:
    """The metadata's ``self_blending`` entry: the recipe and how the epoch was built."""
    return {
        "method": "self-blended images (Shiohara & Yamasaki, CVPR 2022), dfpipe.train.sbi.blend",
        "ratio": sbi_plan.ratio,
        "ratio_meaning": "share of each epoch's fake examples that are self-blended",
        "real_per_epoch": sbi_plan.real, "self_blended_per_epoch": sbi_plan.self_blended,
        "split_fakes_per_epoch": sbi_plan.split_fakes_per_epoch,
        "split_fakes_available": sbi_plan.split_fakes_available,
        "batch": f"{sbi_plan.pairs_per_batch} units of 2 images (pairs share a batch)",
        "blend_ratios": list(BLEND_RATIOS),
        "landmarks": report.as_dict(),
    }


class _UnitLoader(CropLoader):
    """Decode one unit to two images; called from tf.data worker threads."""

    def __init__(self, size: int, augment: float, landmarks: Landmarks) -> None:
        super().__init__(size, augment)
        self.landmarks = landmarks

    def __call__(self, kind: Any, path_a: bytes, path_b: bytes, index: Any,
                 seed: Any) -> np.ndarray:
        seed = int(seed) % SEED_RANGE
        if int(kind) == PAIR:
            image, w, h = self.read(path_a)
            points = self.landmarks.in_pixels(int(index), w, h)
            points = points * np.array([self.size / w, self.size / h], np.float32)
            made = self_blend(image, points, np.random.default_rng(seed))
            images = [self.augment_image(made.target, seed + 1),
                      self.augment_image(made.blended, seed + 1)]
        else:
            images = [self.augment_image(self.read(p)[0], seed + k)
                      for k, p in enumerate((path_a, path_b), 1)]
        return np.ascontiguousarray(np.stack(images), dtype=np.uint8)


def make_sbi_dataset(crops: Sequence[Crop], landmarks: Landmarks, sbi_plan: SBIPlan, size: int,
                     seed: int = 0, augment: float = 1.0) -> Any:
    """Training batches (float32 RGB 0..255 [B, size, size, 3], float32 labels [B, 1]) of
    pairs and split-fake units, shuffled each epoch; B = 2 x ``pairs_per_batch``."""
    import tensorflow as tf

    real = [i for i, c in enumerate(crops) if c.label == REAL]
    fake = np.array([str(c.path) for c in crops if c.label == FAKE] or [""])
    n_units = len(real) + sbi_plan.split_fakes_per_epoch // 2
    pairs = tf.data.Dataset.from_tensor_slices((
        np.full(len(real), PAIR, np.int32), np.array([str(crops[i].path) for i in real]),
        np.array([""] * len(real)), np.array(real, np.int64)))
    units = pairs
    if sbi_plan.split_fakes_per_epoch:
        drawn = (tf.data.Dataset.from_tensor_slices(fake)
                 .shuffle(len(fake), seed=seed + 7, reshuffle_each_iteration=True).repeat()
                 .batch(2, drop_remainder=True).take(sbi_plan.split_fakes_per_epoch // 2)
                 .map(lambda two: (tf.constant(FAKES, tf.int32), two[0], two[1],
                                   tf.constant(-1, tf.int64))))
        units = units.concatenate(drawn)
    units = units.shuffle(n_units, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    loader = _UnitLoader(size, augment, landmarks)

    def load(unit: Any, item_seed: Any) -> Any:
        kind, path_a, path_b, index = unit
        images = tf.numpy_function(loader, [kind, path_a, path_b, index, item_seed], tf.uint8,
                                   stateful=False)
        images.set_shape((2, size, size, 3))
        labels = tf.where(kind == PAIR, tf.constant([[REAL], [FAKE]], tf.float32),
                          tf.constant([[FAKE], [FAKE]], tf.float32))
        return images, labels

    per_batch = sbi_plan.pairs_per_batch
    ds = tf.data.Dataset.zip((units, seeds)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(per_batch, drop_remainder=n_units > per_batch)
    ds = ds.map(lambda x, y: (tf.cast(tf.reshape(x, (-1, size, size, 3)), tf.float32),
                              tf.reshape(y, (-1, 1))))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


@dataclass
class SBITraining:
    """Everything train() needs for ``--sbi``: a dataset per epoch, class-weight labels and
    the metadata entry."""

    crops: list[Crop]
    landmarks: Landmarks
    ratio: float
    size: int
    batch_size: int
    seed: int
    augment: float
    frames_per_video: int | None
    labels: list[int]
    settings: dict[str, Any]

    def epoch_crops(self, epoch: int) -> list[int]:
        """Indices of epoch ``epoch``'s crops: at most ``frames_per_video`` real crops per
        video (the draw plain training makes) and every fake (the mix draws from them)."""
        real = [c for c in self.crops if c.label == REAL]
        drawn = {c.path for c in draw_per_video(real, self.frames_per_video,
                                                np.random.default_rng([self.seed, epoch]))}
        return [i for i, c in enumerate(self.crops) if c.label == FAKE or c.path in drawn]

    def dataset(self, epoch: int) -> Any:
        """Epoch ``epoch``'s batches, a function of (seed, epoch) only, so a resumed run
        sees the blends an uninterrupted one would."""
        idx = self.epoch_crops(epoch)
        crops = [self.crops[i] for i in idx]
        marks = Landmarks(self.landmarks.points[idx], self.landmarks.relative[idx])
        epoch_seed = (self.seed + 1_000_003 * epoch) % SEED_RANGE
        return make_sbi_dataset(crops, marks, plan(crops, self.ratio, self.batch_size),
                                self.size, epoch_seed, self.augment)


def sbi_training(crops: Sequence[Crop], root: Path, output: Path, ratio: float, size: int,
                 batch_size: int, seed: int, augment: bool,
                 frames_per_video: int | None = None) -> SBITraining:
    """Find the real crops' keypoints (cached beside the split, else in ``output``) and plan
    the epochs of self-blended training."""
    real = [c for c in crops if c.label == REAL]
    found, report = resolve_landmarks(real, root, cache_location(root, output))
    by_path = {c.path: i for i, c in enumerate(real)}
    points = np.zeros((len(crops), 5, 2), np.float32)
    relative = np.zeros(len(crops), bool)
    for i, c in enumerate(crops):
        if c.label == REAL:
            points[i], relative[i] = found.points[by_path[c.path]], found.relative[by_path[c.path]]
    training = SBITraining(list(crops), Landmarks(points, relative), ratio, size, batch_size,
                           seed, augment, frames_per_video, [], {})
    first = [training.crops[i] for i in training.epoch_crops(0)]
    sbi_plan = plan(first, ratio, batch_size)
    if batch_size % 2:
        log.warning("--batch-size %d is odd: self-blended batches hold %d images (pairs)",
                    batch_size, 2 * sbi_plan.pairs_per_batch)
    log.info("self-blended training: %d real + %d self-blended + %d of the split's %d fakes "
             "per epoch", sbi_plan.real, sbi_plan.self_blended, sbi_plan.split_fakes_per_epoch,
             sbi_plan.split_fakes_available)
    training.labels = sbi_plan.labels()
    training.settings = settings(sbi_plan, report)
    return training

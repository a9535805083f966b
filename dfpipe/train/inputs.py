"""tf.data input pipelines over a split folder: per-video draw, decode, augmentation, batching.

Crops come from :func:`dfpipe.core.splittable.load_split` and are decoded by
:func:`dfpipe.core.images.read_rgb`, the reader evaluation and the app use too. Each training epoch
draws at most ``frames_per_video`` crops per video, spread over its timeline (so long videos do
not dominate), then shuffles or class-balances them; validation uses one fixed draw.
Augmentation (albumentations) runs on the training set only; validation batches are the
decoded crops, untouched. Every random choice is a function of (seed, epoch): the draw, the
order and one seed per augmented image, so an epoch is the same whatever thread decodes which
image and whether the run was resumed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb, to_feed_size
from dfpipe.core.labels import CLASS_NAMES, FAKE, REAL
from dfpipe.core.sampling import evenly_spaced
from dfpipe.core.splittable import Crop, load_split

log = logging.getLogger(__name__)

BALANCE_MODES: tuple[str, ...] = ("weights", "sampling", "none")
SEED_RANGE = 2**31 - 1


@dataclass(frozen=True)
class SplitCounts:
    """What a split holds, for the log and the model metadata."""

    crops: int
    videos: int
    groups: int
    real: int
    fake: int

    def as_dict(self) -> dict[str, int]:
        return {"crops": self.crops, "videos": self.videos, "groups": self.groups,
                "real": self.real, "fake": self.fake}


def read_split(root: Path, split: str) -> list[Crop]:
    """The crops of one split; PipelineError if it is missing, empty or lacks a class."""
    crops = load_split(root, split)
    counts = Counter(c.label for c in crops)
    for cls in (REAL, FAKE):
        if counts[cls] == 0:
            other = CLASS_NAMES[1 - cls]
            raise PipelineError(
                f"split '{split}' under {root} has no {CLASS_NAMES[cls]} crops (only "
                f"{counts[1 - cls]} {other}): both classes are needed; re-run split.py on a "
                "dataset with real and fake videos")
    return crops


def split_counts(crops: Sequence[Crop]) -> SplitCounts:
    """Crops, videos, groups and crops per class of a split."""
    labels = Counter(c.label for c in crops)
    return SplitCounts(crops=len(crops), videos=len({c.video_id for c in crops}),
                       groups=len({c.group for c in crops}), real=labels[REAL],
                       fake=labels[FAKE])


def class_weights(labels: Sequence[int]) -> dict[int, float]:
    """Keras class weights that make both classes count equally in the loss."""
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.array([REAL, FAKE])
    weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels))
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def build_augmenter(seed: int | None = None) -> A.Compose:
    """The training augmentations of DeepfakeBench's recipe, plus a little sensor noise.

    Flip p 0.5; a detector box a few pixels off (shift/scale, rotation +-10 degrees) p 0.5;
    blur p 0.5 with kernels 3-7; noise p 0.2; brightness/contrast +-0.1 p 0.5; and last, as a
    re-uploaded video meets it, JPEG re-compression at quality 40-100 p 0.5. None changes
    whether a face is fake.
    """
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 7)), A.MotionBlur(blur_limit=(3, 7))], p=0.5),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        A.ImageCompression(quality_range=(40, 100), p=0.5),
    ], seed=seed)


def seed_transforms(transform: Any, seed: int) -> None:
    """Seed an augmentation pipeline for one image: one generator pair that every transform
    draws from in turn.

    Albumentations' ``set_random_seed`` gives each transform its own generator with the same
    seed, so their "apply with probability p" draws coincide (all on or all off together).
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


class CropLoader:
    """Decode a crop, bring it to the feed size and (training) augment it: the one path every
    training input takes. Called from tf.data worker threads, each keeping its own augmenter."""

    def __init__(self, size: int, augment: bool) -> None:
        self.size = size
        self.augment = augment
        self._local = threading.local()

    def read(self, path: bytes | str) -> tuple[np.ndarray, int, int]:
        """The crop at the feed size, and its width and height as stored."""
        image = read_rgb(path.decode("utf-8") if isinstance(path, bytes) else path)
        h, w = image.shape[:2]
        return to_feed_size(image, self.size), w, h

    def augment_image(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The training augmentation drawn from ``seed`` (the image itself when off)."""
        if not self.augment:
            return image
        aug = getattr(self._local, "augmenter", None)
        if aug is None:
            aug = self._local.augmenter = build_augmenter()
        seed_transforms(aug, seed)
        return aug(image=image)["image"]

    def __call__(self, path: bytes, seed: Any) -> np.ndarray:
        image = self.augment_image(self.read(path)[0], int(seed) % SEED_RANGE)
        return np.ascontiguousarray(image, dtype=np.uint8)


def draw_per_video(crops: Sequence[Crop], limit: int | None,
                   rng: np.random.Generator | None = None) -> list[Crop]:
    """At most ``limit`` crops of each video, one from each of ``limit`` equal stretches of its
    timeline: a random one per stretch with ``rng`` (training, redrawn every epoch), the middle
    one without (validation's fixed draw). ``limit`` None or < 1 keeps every crop."""
    if not limit or limit < 1:
        return list(crops)
    by_video: dict[str, list[Crop]] = {}
    for crop in crops:
        by_video.setdefault(crop.video_id, []).append(crop)
    chosen: list[Crop] = []
    for video in sorted(by_video):
        items = sorted(by_video[video], key=lambda c: (c.frame, str(c.path)))
        if len(items) <= limit:
            chosen.extend(items)
            continue
        chosen.extend(items[i] for i in evenly_spaced(len(items), limit, rng))
    return chosen


@dataclass(frozen=True)
class EpochPlan:
    """One training epoch: which crops, in which order, with which augmentation seeds."""

    crops: list[Crop]
    seeds: np.ndarray

    @property
    def labels(self) -> list[int]:
        return [c.label for c in self.crops]


def epoch_plan(crops: Sequence[Crop], epoch: int, seed: int, frames_per_video: int | None,
               balance: str = "weights") -> EpochPlan:
    """The crops of training epoch ``epoch``: a per-video draw, then shuffled, or, with
    ``balance='sampling'``, as many draws with real and fake equally likely. A function of
    (seed, epoch) only, so a resumed run sees the epochs an uninterrupted one would."""
    if balance not in BALANCE_MODES:
        raise PipelineError(f"unknown balance mode '{balance}': use {', '.join(BALANCE_MODES)}")
    rng = np.random.default_rng([seed, epoch])
    drawn = draw_per_video(crops, frames_per_video, rng)
    if balance == "sampling":
        labels = np.array([c.label for c in drawn])
        pools = [np.flatnonzero(labels == cls) for cls in (REAL, FAKE)]
        if any(len(pool) == 0 for pool in pools):
            raise PipelineError("balanced sampling needs real and fake training crops")
        classes = rng.integers(0, 2, len(drawn))
        order = np.array([pools[c][rng.integers(len(pools[c]))] for c in classes])
    else:
        order = rng.permutation(len(drawn))
    seeds = rng.integers(0, SEED_RANGE, len(order))
    return EpochPlan(crops=[drawn[i] for i in order], seeds=seeds)


def make_dataset(crops: Sequence[Crop], size: int, batch_size: int, training: bool,
                 seed: int = 0, augment: bool = True, balance: str = "weights",
                 epoch: int = 0, frames_per_video: int | None = None,
                 shard: tuple[int, int] | None = None) -> Any:
    """Batches of (float32 RGB 0..255 images [B,size,size,3], float32 labels [B,1]).

    ``training``: one epoch (:func:`epoch_plan` of ``epoch``), augmented when ``augment``, the
    last partial batch dropped. Otherwise the crops (``frames_per_video``: their fixed draw)
    are read once, in order, never augmented. ``shard`` (workers, this worker's index): this
    worker keeps every workers-th file *before* decoding, so no worker decodes another's
    share (tf.data's automatic sharding would decode every file on every worker and then
    drop most of them).
    """
    import tensorflow as tf

    if training:
        plan = epoch_plan(crops, epoch, seed, frames_per_video, balance)
        chosen, seeds = plan.crops, plan.seeds
    else:
        chosen = draw_per_video(crops, frames_per_video)
        seeds = np.zeros(len(chosen), dtype=np.int64)
    paths = np.array([str(c.path) for c in chosen])
    labels = np.array([c.label for c in chosen], dtype=np.float32)
    loader = CropLoader(size, augment=training and augment)

    def load(path: Any, label: Any, item_seed: Any) -> Any:
        image = tf.numpy_function(loader, [path, item_seed], tf.uint8, stateful=False)
        image.set_shape((size, size, 3))
        return image, tf.reshape(label, (1,))

    ds = tf.data.Dataset.from_tensor_slices((paths, labels, seeds.astype(np.int64)))
    if shard is not None:
        ds = ds.shard(*shard)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training and len(chosen) > batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if shard is not None
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def feed_size(crops: Sequence[Crop], crop_settings: dict[str, Any] | None) -> int:
    """The side the pipeline feeds the model: the crop size preprocess wrote, else the first
    crop's own size (crops of another size are resized to it)."""
    if crop_settings and isinstance(crop_settings.get("size"), int):
        return int(crop_settings["size"])
    image = read_rgb(crops[0].path)
    return int(max(image.shape[:2]))

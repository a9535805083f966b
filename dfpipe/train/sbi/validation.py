"""Validation without a single real fake (``train.py --sbi --sbi-val``).

A self-blended run that picks its checkpoint and thresholds on the split's real fakes has
seen those fakes after all, so a figure called "trained on reals only" would not be. Here the
validation reals (one fixed draw per video) are kept and each is paired with its own
self-blend, made once with a seed per crop: the validation set is the same at every epoch and
in a resumed run, and no real fake of the split is read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import FAKE, REAL
from dfpipe.core.splittable import Crop
from dfpipe.train.inputs import CropLoader
from dfpipe.train.sbi.blend import self_blend
from dfpipe.train.sbi.landmarks import cache_location, resolve_landmarks

log = logging.getLogger(__name__)

FAKE_SUFFIX = "#self-blended"


@dataclass
class SBIValidation:
    """The validation images (reals, then their self-blends) with labels and videos."""

    images: np.ndarray = field(repr=False)  # uint8 [2N, size, size, 3]
    labels: list[int]
    video_ids: list[str]
    order: list[tuple[float, str]]
    settings: dict[str, Any]

    def dataset(self, batch_size: int) -> Any:
        """Batches of (float32 images, float32 labels [B, 1]), in order, never augmented."""
        import tensorflow as tf

        y = np.asarray(self.labels, np.float32).reshape(-1, 1)
        return tf.data.Dataset.from_tensor_slices((self.images.astype(np.float32), y)).batch(
            batch_size).prefetch(tf.data.AUTOTUNE)


def sbi_validation(val_crops: Sequence[Crop], root: Path, output: Path, size: int,
                   seed: int) -> SBIValidation:
    """The validation reals of ``val_crops`` and one self-blend of each (crop ``i``'s blend
    drawn from the seed (``seed``, ``i``))."""
    reals = [c for c in val_crops if c.label == REAL]
    if not reals:
        raise PipelineError("--sbi-val needs real crops in the validation split")
    points, report = resolve_landmarks(reals, root, cache_location(root, output))
    loader = CropLoader(size, augment=False)
    real_images, fake_images = [], []
    for i, crop in enumerate(tqdm(reals, desc="self-blended validation", unit="crop")):
        image, w, h = loader.read(str(crop.path))
        where = points.in_pixels(i, w, h) * np.array([size / w, size / h], np.float32)
        made = self_blend(image, where, np.random.default_rng([seed, i]))
        real_images.append(image)
        fake_images.append(made.blended)
    ids = [c.video_id for c in reals]
    order = [(float(c.frame), c.path.name) for c in reals]
    settings = {"kind": "self_blended",
                "meaning": "validation fakes are self-blends of the validation reals; no real "
                           "fake of the split was seen by the checkpoint or the thresholds",
                "real_crops": len(reals), "self_blended_crops": len(reals),
                "split_fakes_left_out": sum(c.label == FAKE for c in val_crops),
                "landmarks": report.as_dict()}
    log.info("self-blended validation: %d reals and %d self-blends (the split's %d fake crops "
             "are not used)", len(reals), len(reals), settings["split_fakes_left_out"])
    return SBIValidation(np.stack(real_images + fake_images), [REAL] * len(reals)
                         + [FAKE] * len(reals), ids + [v + FAKE_SUFFIX for v in ids],
                         order + order, settings)

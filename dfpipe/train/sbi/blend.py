"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): a fake made from one real face.

A real face is blended with a slightly altered copy of itself, so the only traces of the
forgery are the generic ones every face swap leaves: a blending boundary, a colour and
sharpness mismatch, a small misalignment. A detector trained on them learns those traces,
not one generator's fingerprints. This module is the one blending implementation of the
project: train.py's ``--sbi`` pairs and the demo's sample fakes (:mod:`dfpipe.sample.forging`) both
call :func:`self_blend` / :func:`soft_mask` / :func:`blend`.

Following the paper's recipe:

* source and target are the same face; one of them (either, with equal odds) goes through
  :func:`source_transform` (RGB, hue/saturation/value and brightness/contrast shifts, then one
  of a downscale-and-upscale, a sharpen or a blur), and the source is shifted (up to 3 % of
  the face width, 1.5 % of its height) and scaled (0.95 to 1/0.95) about the face centre;
* the mask is the convex hull of the inner face (:func:`inner_face_outline`), moved with the
  source, deformed elastically, then blurred twice with random kernels (the paper's
  ``get_blend_mask``) and multiplied by a ratio drawn from :data:`BLEND_RATIOS`;
* the fake is ``mask * source + (1 - mask) * target`` and the real of its pair is the target.

Every random draw comes from the numpy Generator given, so one seed gives one image.
Run ``python -m dfpipe.train.sbi.grid --grid docs/sbi_grid.png --data FOLDER`` for a picture
of examples.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np

from dfpipe.core.errors import PipelineError

log = logging.getLogger(__name__)

BLEND_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
SHIFT = (0.03, 0.015)  # largest source shift, as a share of the face's width and height
SCALE = (0.95, 1 / 0.95)  # source scale range about the face centre
CANVAS = 256  # the mask is drawn and deformed at this side ...
BLUR_CANVAS = (192, 256)  # ... and blurred after resizing to a side drawn in this range
BLUR_KERNELS = (5, 25)  # odd Gaussian kernel sides (at the blur canvas)
# albumentations ElasticTransform: the paper's alpha 50, sigma 7 on its 380 px crops, scaled
# to CANVAS with the same displacement relative to the face (sigma * k, alpha * k**2), which
# costs half the time of deforming at 380 px.
ELASTIC = {"alpha": 50.0 * (CANVAS / 380) ** 2, "sigma": 7.0 * CANVAS / 380}
CANVAS_MARGIN = 1.5  # canvas side / the hull's longer side

# The mean face shape of dlib's 68 landmarks (OpenFace's ``align_dlib`` template, unit
# square): the jaw line (points 0-16) and the eyebrows (17-26) outline the inner face the
# paper's convex hull covers; the five points the face detectors give are read off the same
# shape (eye centres = mean of 36-41 and 42-47, nose tip 30, mouth corners 48 and 54).
MEAN_OUTLINE = np.array([
    (0.0792, 0.3392), (0.0829, 0.4570), (0.0968, 0.5756), (0.1221, 0.6919), (0.1687, 0.8003),
    (0.2398, 0.8957), (0.3257, 0.9771), (0.4223, 1.0433), (0.5318, 1.0608), (0.6413, 1.0398),
    (0.7381, 0.9723), (0.8244, 0.8896), (0.8948, 0.7925), (0.9394, 0.6815), (0.9611, 0.5622),
    (0.9706, 0.4418), (0.9712, 0.3221), (0.1638, 0.2492), (0.2178, 0.2043), (0.2913, 0.1924),
    (0.3675, 0.2036), (0.4393, 0.2331), (0.5864, 0.2281), (0.6602, 0.1959), (0.7375, 0.1824),
    (0.8132, 0.1928), (0.8708, 0.2353)], np.float64)
MEAN_FIVE = np.array([(0.3266, 0.3275), (0.7090, 0.3220), (0.5182, 0.5532), (0.3532, 0.7462),
                      (0.6995, 0.7394)], np.float64)


def order_five(points: Any) -> np.ndarray:
    """Five keypoints as float (5, 2) in image order: eye with the smaller x, the other eye,
    nose, mouth corner with the smaller x, the other (detectors disagree on 'left')."""
    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    eyes = p[[0, 1]][np.argsort(p[[0, 1], 0], kind="stable")]
    mouth = p[[3, 4]][np.argsort(p[[3, 4], 0], kind="stable")]
    return np.vstack([eyes, p[2:3], mouth])


def inner_face_outline(landmarks: Any) -> np.ndarray:
    """The 27 jaw and eyebrow points of the face whose five keypoints are ``landmarks``.

    Five points alone span only eyes to mouth, a hull that would leave the cheeks, chin and
    brows unblended. The paper takes the hull of dlib's 68 (or 81) landmarks, which runs along
    the jaw from ear to ear and over the eyebrows. Here that outline comes from the mean dlib
    face: the affine map that best carries its five points onto the detected five (least
    squares, so head size, roll and the sideways squeeze of a turned head follow the eyes and
    mouth) is applied to its jaw and eyebrow points, and their hull covers the same region.
    """
    five = order_five(landmarks)
    design = np.hstack([MEAN_FIVE, np.ones((5, 1))])
    affine, *_ = np.linalg.lstsq(design, five, rcond=None)
    return np.hstack([MEAN_OUTLINE, np.ones((len(MEAN_OUTLINE), 1))]) @ affine


_LOCAL = threading.local()


def source_transform() -> A.Compose:
    """The paper's source transform: colour and brightness shifts, then one of a downscale
    and upscale (the lower resolution of a generated face), a sharpen or a blur."""
    return A.Compose([
        A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=0.3),
        A.HueSaturationValue(hue_shift_limit=3, sat_shift_limit=10, val_shift_limit=10, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0),
        A.OneOf([
            A.Downscale(scale_range=(0.25, 0.5), interpolation_pair={
                "downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_LINEAR}),
            A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0)),
            A.GaussianBlur(blur_limit=(3, 5)),
        ], p=1.0),
    ])


def _seeded(name: str, build: Any, seed: int) -> Any:
    """A per-thread transform, seeded for one call (albumentations keeps state)."""
    transform = getattr(_LOCAL, name, None)
    if transform is None:
        transform = build()
        setattr(_LOCAL, name, transform)
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def _elastic() -> A.ElasticTransform:
    return A.ElasticTransform(alpha=ELASTIC["alpha"], sigma=ELASTIC["sigma"], p=1.0)


def _odd(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1


def soft_mask(shape: tuple[int, ...], outline: np.ndarray, rng: np.random.Generator,
              ratio: float = 1.0) -> np.ndarray:
    """The blending mask (float32 in [0, ratio]) of the hull of ``outline`` (image points).

    Drawn on a square canvas around the face (so the deformation and blur scale with the
    face, not the image): hull filled, deformed elastically (the paper's strength),
    resized to a random 192-256 px side, blurred with a random odd kernel, cut to its fully
    covered core, blurred again with another random kernel and sigma, normalised to 1 at the
    core, resized back and pasted into the image frame (parts outside the image drop out).
    """
    h, w = shape[:2]
    lo, hi = outline.min(0), outline.max(0)
    side = max(float((hi - lo).max()) * CANVAS_MARGIN, 8.0)
    corner = (lo + hi) / 2 - side / 2
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    points = np.round((outline - corner) * (CANVAS / side)).astype(np.int32)
    cv2.fillConvexPoly(canvas, cv2.convexHull(points), 1.0)
    canvas = _seeded("elastic", _elastic, int(rng.integers(2**31)))(image=canvas)["image"]
    blur_side = int(rng.integers(BLUR_CANVAS[0], BLUR_CANVAS[1] + 1))
    small = cv2.resize(canvas, (blur_side, blur_side), interpolation=cv2.INTER_LINEAR)
    k1, k2 = _odd(rng, *BLUR_KERNELS), _odd(rng, *BLUR_KERNELS)
    small = cv2.GaussianBlur(small, (k1, k1), 0)
    peak = float(small.max())
    if peak <= 0:
        return np.zeros((h, w), np.float32)
    small = np.where(small / peak < 1.0 - 1e-6, 0.0, 1.0).astype(np.float32)
    small = cv2.GaussianBlur(small, (k2, k2), float(rng.integers(5, 46)))
    small /= max(float(small.max()), 1e-6)
    full = max(1, int(round(side)))
    big = cv2.resize(small, (full, full), interpolation=cv2.INTER_LINEAR)
    mask = np.zeros((h, w), np.float32)
    x0, y0 = int(round(corner[0])), int(round(corner[1]))
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(w, x0 + full), min(h, y0 + full)
    if xe > xs and ye > ys:
        mask[ys:ye, xs:xe] = big[ys - y0:ye - y0, xs - x0:xe - x0]
    return np.clip(mask, 0.0, 1.0) * np.float32(ratio)


def blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * source + (1 - mask) * target`` per pixel, rounded to uint8."""
    alpha = mask[..., None].astype(np.float32)
    out = source.astype(np.float32) * alpha + target.astype(np.float32) * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SelfBlend:
    """One self-blended image and what it was made of (all the size of the input)."""

    blended: np.ndarray  # the fake, uint8 RGB
    source: np.ndarray  # the pasted face, uint8 RGB
    target: np.ndarray  # the face pasted onto: the real image of the pair, uint8 RGB
    mask: np.ndarray  # float32 weight of the source per pixel, in [0, ratio]
    ratio: float
    transformed: str  # "source" or "target": which one went through source_transform


def paper_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`source_transform` applied with a seed drawn from ``rng``."""
    return _seeded("source", source_transform, int(rng.integers(2**31)))(image=image)["image"]


def self_blend(image: np.ndarray, landmarks: Any, rng: np.random.Generator,
               keep_target: bool = False, ratios: tuple[float, ...] = BLEND_RATIOS,
               transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
               ) -> SelfBlend:
    """A self-blended fake of the RGB ``image`` whose face has five keypoints ``landmarks``.

    ``keep_target`` puts the transform on the source always, so the target stays the input
    image (the demo films the untouched photo as the real video); training leaves it off,
    as the paper does, and uses :attr:`SelfBlend.target` as the real of the pair.
    ``transform`` (image, rng) -> image replaces the paper's :func:`paper_transform`.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PipelineError(f"self_blend needs an RGB uint8 image, got {image.dtype} "
                            f"{image.shape}")
    h, w = image.shape[:2]
    outline = inner_face_outline(landmarks)
    on_source = keep_target or bool(rng.random() < 0.5)
    changed = (transform or paper_transform)(image, rng)
    source, target = (changed, image) if on_source else (image, changed)
    lo, hi = outline.min(0), outline.max(0)
    centre = (lo + hi) / 2
    scale = float(rng.uniform(*SCALE))
    shift = rng.uniform(-1.0, 1.0, size=2) * np.array(SHIFT) * (hi - lo)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    moved = np.hstack([outline, np.ones((len(outline), 1))]) @ matrix.T
    ratio = float(ratios[int(rng.integers(len(ratios)))])
    mask = soft_mask(image.shape, moved, rng, ratio)
    return SelfBlend(blended=blend(target, source, mask), source=source,
                     target=np.ascontiguousarray(target), mask=mask, ratio=ratio,
                     transformed="source" if on_source else "target")

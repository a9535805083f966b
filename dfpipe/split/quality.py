"""Quality filter for face crops: too small, too blurred or too uncertain faces are dropped.

Rules run in a fixed order, cheapest first, and each crop is charged to the first rule it
fails, so the report's counts add up to what was removed: ``face_size`` (original face
side before resizing, from the manifest), ``confidence`` (detector score), ``unreadable``
(the JPEG is missing or corrupt), ``sharpness`` (variance of the Laplacian of the grey
crop), then ``max_per_video`` (keep at most K crops per video, spread evenly over time).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dfpipe.core.sampling import evenly_spaced
from dfpipe.core.splittable import QUALITY_RULE_KEYS

log = logging.getLogger(__name__)

MIN_FACE = 40
MIN_SHARPNESS = 20.0
MIN_CONFIDENCE = 0.9
RULES: tuple[str, ...] = ("face_size", "confidence", "unreadable", "sharpness", "max_per_video")


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the filter; a crop below any of them is removed."""

    min_face: float = MIN_FACE
    min_sharpness: float = MIN_SHARPNESS
    min_confidence: float | None = MIN_CONFIDENCE
    max_per_video: int | None = None

    def __post_init__(self) -> None:
        if self.max_per_video is not None and self.max_per_video < 1:
            raise ValueError(f"max_per_video must be at least 1, got {self.max_per_video}")


@dataclass(frozen=True)
class FaceCrop:
    """One saved face crop with what the manifest says about it and its measured sharpness."""

    file: str
    label: str
    video_id: str
    group: str
    frame: int
    face: int
    face_size: float
    confidence: float
    sharpness: float = math.nan
    group_rule: str = ""
    landmarks: str = ""  # five keypoints in crop pixels as JSON, "" when unknown


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low on blurred crops, high on detailed ones."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def jpeg_sharpness(data: bytes) -> float:
    """Sharpness of a crop's JPEG bytes, decoded to grey exactly as split.py reads the file."""
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        raise ValueError("cannot decode JPEG bytes")
    return sharpness(gray)


def image_sharpness(path: Path) -> float | None:
    """Sharpness of the image at ``path``; None when it is missing or cannot be decoded."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        return None
    return sharpness(gray)


def default_workers() -> int:
    """Threads for reading crops: JPEG decoding releases the GIL, so threads scale."""
    return max(1, min(8, os.cpu_count() or 1))


def measure_sharpness(paths: Sequence[Path], workers: int | None = None) -> list[float | None]:
    """Sharpness of every path, in order (None where unreadable)."""
    workers = workers or default_workers()
    bar = dict(total=len(paths), desc="sharpness", unit="crop", disable=len(paths) < 200)
    if workers == 1:
        return [image_sharpness(p) for p in tqdm(paths, **bar)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(image_sharpness, paths), **bar))


def filter_crops(crops: Sequence[FaceCrop], root: Path, rules: QualityRules,
                 workers: int | None = None) -> tuple[list[FaceCrop], dict[str, int]]:
    """Crops that pass every rule (with sharpness filled in) and how many each rule removed."""
    removed = dict.fromkeys(RULES, 0)
    candidates = []
    for crop in crops:
        if crop.face_size < rules.min_face:
            removed["face_size"] += 1
        elif crop.confidence < rules.min_confidence:
            removed["confidence"] += 1
        else:
            candidates.append(crop)
    values = measure_sharpness([Path(root) / c.file for c in candidates], workers)
    sharp = []
    for crop, value in zip(candidates, values, strict=True):
        if value is None:
            log.warning("cannot read crop %s; skipped", Path(root) / crop.file)
            removed["unreadable"] += 1
        elif value < rules.min_sharpness:
            removed["sharpness"] += 1
        else:
            sharp.append(replace(crop, sharpness=value))
    kept = _cap_per_video(sharp, rules.max_per_video)
    removed["max_per_video"] = len(sharp) - len(kept)
    return kept, removed


def _cap_per_video(crops: list[FaceCrop], k: int | None) -> list[FaceCrop]:
    if k is None:
        return crops
    by_video: dict[str, list[FaceCrop]] = defaultdict(list)
    for crop in crops:
        by_video[crop.video_id].append(crop)
    kept = []
    for video in sorted(by_video):
        ordered = sorted(by_video[video], key=lambda c: (c.frame, c.face, c.file))
        kept.extend(ordered[i] for i in evenly_spaced(len(ordered), k))
    return kept


def rules_of(meta: dict[str, Any]) -> QualityRules | None:
    """QualityRules from a model's ``quality`` metadata; None for a model without them."""
    quality = meta.get("quality")
    if not isinstance(quality, dict):
        return None
    try:
        return QualityRules(**{k: quality[k] for k in QUALITY_RULE_KEYS})
    except (KeyError, TypeError, ValueError):
        log.warning("model metadata 'quality' is malformed (%s); not applied", quality)
        return None


def face_passes(face: dict[str, Any], rules: QualityRules) -> bool:
    """Whether one scored face (the app's dict: face_size, confidence, sharpness) passes."""
    return (face["face_size"] >= rules.min_face
            and face["confidence"] >= (rules.min_confidence or 0.0)
            and face.get("sharpness", math.inf) >= rules.min_sharpness)


def kept_faces(faces: Sequence[dict[str, Any]], rules: QualityRules | None) -> list[int]:
    """Indices of the faces training's filter would have kept, in order (all without rules):
    the per-crop rules, then at most ``max_per_video`` spread evenly over time."""
    if rules is None:
        return list(range(len(faces)))
    passing = [i for i, f in enumerate(faces) if face_passes(f, rules)]
    if rules.max_per_video is None:
        return passing
    ordered = sorted(passing, key=lambda i: (faces[i]["frame"], faces[i]["face"]))
    return sorted(ordered[j] for j in evenly_spaced(len(ordered), rules.max_per_video))

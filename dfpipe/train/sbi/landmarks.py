"""Five facial keypoints for the crops self-blending needs, found once and kept.

Self-blending (:mod:`dfpipe.train.sbi.blend`) draws its mask from the eyes, nose and mouth
corners of a
crop. Crops written by preprocess.py carry the face detector's keypoints in the split table
(``landmarks`` column, crop pixels). Crops without them (an older split, a folder of crops
from elsewhere) are run through MTCNN once; what it finds, or that it found nothing, is kept
in a JSON cache (:data:`CACHE_NAME`) keyed by the crop's path and byte size, so a second
run detects nothing. A crop where no face is found gets a default layout: the median layout
of the crops of the same run where MTCNN did find one (same framing), else
:data:`DEFAULT_LAYOUT`. How many crops took each route is reported.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dfpipe.core.atomic import write_json_atomic
from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb
from dfpipe.core.labels import IMAGE_EXTENSIONS, REAL
from dfpipe.core.splittable import Crop, load_split

log = logging.getLogger(__name__)

CACHE_NAME = "landmarks.json"
CACHE_VERSION = 1
DETECT_BATCH = 16
PAD = 0.25  # border added (share of the side) before a second try on a crop MTCNN missed
MIN_CONFIDENCE = 0.9

# Where the five keypoints (eye with the smaller x, other eye, nose, mouth corners) sit in a
# centred square crop with preprocess's default margin (1.3 x the detector's box), as shares
# of the crop's width and height: MTCNN's median on 60 tight DFDC face crops (box = face,
# no margin), shrunk by 1.3 about the centre.
DEFAULT_LAYOUT = np.array([(0.359, 0.334), (0.668, 0.338), (0.510, 0.497), (0.377, 0.673),
                           (0.635, 0.675)], np.float32)


@dataclass
class LandmarkReport:
    """How each crop got its keypoints; recorded in the model's metadata."""

    crops: int = 0
    from_table: int = 0
    cached: int = 0
    detected: int = 0
    default: int = 0
    default_layout: str = "none needed"
    cache: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.crops} crops: {self.from_table} from the split table, {self.cached} "
                f"cached, {self.detected} detected now, {self.default} default layout")


@dataclass(frozen=True)
class Landmarks:
    """Keypoints of a list of crops: ``points[i]`` is (5, 2) float32 in crop pixels, or in
    shares of the crop's width and height where ``relative[i]`` (a default layout)."""

    points: np.ndarray
    relative: np.ndarray

    def in_pixels(self, i: int, width: int, height: int) -> np.ndarray:
        """The keypoints of crop ``i`` in the pixels of its image of that size."""
        p = self.points[i]
        return p * np.array([width, height], np.float32) if self.relative[i] else p


def detect_landmarks(images: Sequence[np.ndarray], detector: Any = None
                     ) -> list[np.ndarray | None]:
    """MTCNN's keypoints of the largest confident face in each RGB crop (None if none).

    A crop missed at first is tried again with a black border (a tight crop's face touches
    the edges, which MTCNN's proposal stage dislikes); points are mapped back to the crop.
    """
    from dfpipe.extract.faces import build_detector, select_faces

    detector = detector or build_detector("mtcnn", MIN_CONFIDENCE)
    found = _largest(detector.detect(list(images)), select_faces)
    for i in [i for i, p in enumerate(found) if p is None]:
        h, w = images[i].shape[:2]
        pad = int(round(PAD * max(h, w)))
        bordered = cv2.copyMakeBorder(images[i], pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                      value=(0, 0, 0))
        again = _largest(detector.detect([bordered]), select_faces)[0]
        found[i] = None if again is None else again - pad
    return found


def _largest(per_image: list[list[Any]], select: Any) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for faces in per_image:
        faces = [f for f in select(faces, "largest") if f.landmarks is not None]
        out.append(np.array(faces[0].landmarks, np.float32) if faces else None)
    return out


def _key(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def read_cache(path: Path | None) -> dict[str, Any]:
    """The cache's entries ({} if there is none); a damaged cache is ignored with a warning."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION:
            raise ValueError(f"version {data.get('version')}")
        return dict(data["crops"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the landmark cache %s (%s); detecting again", path, exc)
        return {}


def write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Write the cache atomically (a killed run keeps the previous complete file)."""
    write_json_atomic(path, {"version": CACHE_VERSION, "detector": "mtcnn",
                             "coordinates": "crop pixels, x y", "crops": entries},
                      sort_keys=True, indent=None)


def cache_location(data: Path, fallback: Path) -> Path:
    """Beside the data when that folder is writable (every run on it reuses the cache),
    else in ``fallback`` (the run's output folder)."""
    data = Path(data)
    return data / CACHE_NAME if os.access(data, os.W_OK) else Path(fallback) / CACHE_NAME


def resolve_landmarks(crops: Sequence[Crop], root: Path, cache: Path | None,
                      detector: Any = None) -> tuple[Landmarks, LandmarkReport]:
    """Keypoints for every crop: split table, else cache, else MTCNN (cached), else default."""
    report = LandmarkReport(crops=len(crops), cache=None if cache is None else str(cache))
    entries = read_cache(cache)
    points = np.zeros((len(crops), 5, 2), np.float32)
    relative = np.zeros(len(crops), bool)
    known = np.zeros(len(crops), bool)
    shares: list[np.ndarray] = []
    todo: list[int] = []
    for i, crop in enumerate(crops):
        if crop.landmarks is not None:
            points[i], known[i] = crop.landmarks, True
            report.from_table += 1
            continue
        entry = entries.get(_key(crop.path, root))
        if entry is not None and entry.get("bytes") == _size(crop.path):
            report.cached += 1
            if entry.get("landmarks") is not None:
                points[i], known[i] = entry["landmarks"], True
                shares.append(points[i] / np.array(entry["image"], np.float32))
            continue
        todo.append(i)
    if todo:
        _detect_into(crops, todo, root, entries, cache, points, known, shares, detector)
        report.detected = len(todo)
    missing = np.flatnonzero(~known)
    if len(missing):
        if shares:
            layout = np.median(np.stack(shares), axis=0).astype(np.float32)
            report.default_layout = f"median of {len(shares)} detected crops"
        else:
            layout = DEFAULT_LAYOUT
            report.default_layout = "DEFAULT_LAYOUT (centred crop, margin 1.3)"
        points[missing], relative[missing] = layout, True
        report.default = len(missing)
        log.warning("no face keypoints for %d of %d crops: they use the %s", len(missing),
                    len(crops), report.default_layout)
    log.info("landmarks: %s", report)
    return Landmarks(points=points, relative=relative), report


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def _detect_into(crops: Sequence[Crop], todo: list[int], root: Path, entries: dict[str, Any],
                 cache: Path | None, points: np.ndarray, known: np.ndarray,
                 shares: list[np.ndarray], detector: Any) -> None:
    from dfpipe.extract.faces import build_detector

    detector = detector or build_detector("mtcnn", MIN_CONFIDENCE)
    batches = [todo[k:k + DETECT_BATCH] for k in range(0, len(todo), DETECT_BATCH)]
    for n, batch in enumerate(tqdm(batches, desc="landmarks (MTCNN)", unit="batch",
                                   disable=len(batches) < 4)):
        images = [read_rgb(crops[i].path) for i in batch]
        for i, image, found in zip(batch, images, detect_landmarks(images, detector),
                                   strict=True):
            h, w = image.shape[:2]
            entries[_key(crops[i].path, root)] = {
                "bytes": _size(crops[i].path), "image": [w, h],
                "landmarks": None if found is None else np.round(found, 1).tolist()}
            if found is not None:
                points[i], known[i] = found, True
                shares.append(found / np.array([w, h], np.float32))
        if cache is not None and (n % 20 == 19 or n == len(batches) - 1):
            write_cache(cache, entries)  # every 20 batches: a killed run keeps its work


def example_faces(data: Path, rows: int, seed: int, cache: Path | None
                  ) -> tuple[list[np.ndarray], list[np.ndarray], LandmarkReport]:
    """``rows`` real crops of ``data`` (a split folder's train split, else the images under
    its real/ folder or under it) and their keypoints, faces found by MTCNN first."""
    data = Path(data)
    if not data.is_dir():
        raise PipelineError(f"--data {data} is not a folder")
    if (data / "split.csv").is_file() or (data / "train").is_dir():
        pool = [c for c in load_split(data, "train") if c.label == REAL]
    else:
        base = data / "real" if (data / "real").is_dir() else data
        pool = [Crop(path=p, label=REAL, video_id=p.stem, group=p.stem, split="train")
                for p in sorted(base.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not pool:
        raise PipelineError(f"no real face crops found under {data}")
    order = np.random.default_rng(seed).permutation(len(pool))[:rows * 3]
    picked = [pool[i] for i in order]
    found, report = resolve_landmarks(picked, data, cache)
    ranked = sorted(range(len(picked)), key=lambda i: bool(found.relative[i]))[:rows]
    images, points = [], []
    for i in ranked:
        image = read_rgb(picked[i].path)
        images.append(image)
        points.append(found.in_pixels(i, image.shape[1], image.shape[0]))
    return images, points, report

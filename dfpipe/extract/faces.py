"""Face detectors by name, and the square face crop every later stage relies on.

Detectors run on a downscaled copy of each frame (``detect_max_side``) and their boxes
are mapped back to original pixels, so a 1080p video costs what a 640p one does.
Each detector keeps its defaults beside it, in :data:`DETECTORS`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import fit_within

log = logging.getLogger(__name__)

DEFAULT_MARGIN = 1.3
DEFAULT_SIZE = 299
DEFAULT_DETECT_MAX_SIDE = 640
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` is (x1, y1, x2, y2) in original-frame pixels; ``landmarks``
    the detector's five keypoints (eyes, nose, mouth corners; x, y) in the same pixels."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def size(self) -> float:
        """Longest side of the detector's box, before margin or resizing."""
        x1, y1, x2, y2 = self.box
        return float(max(x2 - x1, y2 - y1))

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


KEYPOINT_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def five_points(keypoints: dict[str, Any] | None) -> tuple[tuple[float, float], ...] | None:
    """A detector's keypoint dict (MTCNN and RetinaFace use the same five names) as five
    (x, y) in image order: eye with the smaller x first, then the other eye, the nose, the
    mouth corner with the smaller x, the other (RetinaFace names the subject's side,
    MTCNN the image's, so names alone would swap them)."""
    if not keypoints or any(k not in keypoints for k in KEYPOINT_NAMES):
        return None
    p = [(float(keypoints[k][0]), float(keypoints[k][1])) for k in KEYPOINT_NAMES]
    eyes, mouth = sorted(p[:2]), sorted(p[3:])
    return (*eyes, p[2], *mouth)


def landmarks_in_crop(landmarks: Sequence[Sequence[float]], box: tuple[float, float, float, float],
                      margin: float, frame_w: int, frame_h: int, size: int
                      ) -> list[list[float]]:
    """Frame-pixel keypoints in the coordinates of :func:`crop_face`'s crop of ``box``
    (0..size, rounded to 0.1 px), as preprocess stores them in the manifest."""
    x1, y1, x2, _ = square_box(box, margin, frame_w, frame_h)
    scale = size / max(x2 - x1, 1)
    return [[round((x - x1) * scale, 1), round((y - y1) * scale, 1)] for x, y in landmarks]


class Detector:
    """Base class: ``detect`` takes RGB frames and returns the faces found in each."""

    name = "base"

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        raise NotImplementedError


def retinaface_weights_path() -> Path:
    """Where the retina-face package looks for its weights ($DEEPFACE_HOME or ~)."""
    home = os.getenv("DEEPFACE_HOME", default=str(Path.home()))
    return Path(home) / ".deepface" / "weights" / "retinaface.h5"


def ensure_retinaface_weights() -> Path:
    """Find (or download) retinaface.h5; one clear PipelineError when it cannot be had."""
    weights = retinaface_weights_path()
    try:
        from retinaface.model import retinaface_model
    except Exception as exc:  # noqa: BLE001 - an import failure must read as one line
        raise PipelineError(
            f"cannot import retina-face ({str(exc).splitlines()[0]}); it needs tf-keras "
            "with TensorFlow >= 2.16 (pip install -r requirements.txt), or use "
            "--detector mtcnn") from None
    if not weights.is_file():
        log.info("RetinaFace weights missing at %s; trying to download them", weights)
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                retinaface_model.weight_utils.download_weights_if_necessary(
                    file_name="retinaface.h5", source_urls=retinaface_model.WEIGHTS_URLS)
        except Exception:  # noqa: BLE001 - offline: any failure means no weights
            log.debug("download failed: %s", chatter.getvalue(), exc_info=True)
        if not weights.is_file():
            raise PipelineError(
                f"RetinaFace weights not found at {weights} and could not be downloaded: "
                "place retinaface.h5 there (or set DEEPFACE_HOME to the folder holding "
                ".deepface/weights/retinaface.h5), or use --detector mtcnn")
    return weights


class RetinaFaceDetector(Detector):
    """RetinaFace (ResNet-50) from the ``retina-face`` package; one frame per call."""

    name = "retinaface"

    def __init__(self, min_confidence: float = 0.9) -> None:
        self.min_confidence = min_confidence
        weights = ensure_retinaface_weights()
        from retinaface import RetinaFace

        try:
            self._model = RetinaFace.build_model()
        except Exception as exc:  # noqa: BLE001
            raise PipelineError(
                f"cannot load RetinaFace weights from {weights} ({str(exc).splitlines()[0]}): "
                "replace the file, or use --detector mtcnn") from None
        self._detect = RetinaFace.detect_faces

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        out = []
        for rgb in frames:
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            found = self._detect(bgr, threshold=self.min_confidence, model=self._model,
                                 allow_upscaling=False)
            faces = []
            if isinstance(found, dict):
                for item in found.values():
                    x1, y1, x2, y2 = (float(v) for v in item["facial_area"])
                    faces.append(Face((x1, y1, x2, y2), float(item["score"]),
                                      five_points(item.get("landmarks"))))
            out.append(faces)
        return out


class MTCNNDetector(Detector):
    """MTCNN from the ``mtcnn`` package (weights ship with it); batched over frames."""

    name = "mtcnn"

    def __init__(self, min_confidence: float = 0.9, min_face_size: int = 20) -> None:
        from mtcnn import MTCNN

        self.min_confidence = min_confidence
        self.min_face_size = min_face_size
        self._mtcnn = MTCNN()

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        if not frames:
            return []
        results = self._mtcnn.detect_faces(list(frames), box_format="xyxy",
                                           min_face_size=self.min_face_size)
        out = []
        for per_frame in results:
            faces = [Face(tuple(float(v) for v in item["box"]), float(item["confidence"]),
                          five_points(item.get("keypoints")))
                     for item in per_frame if float(item["confidence"]) >= self.min_confidence]
            out.append(faces)
        return out


@dataclass(frozen=True)
class DetectorSpec:
    """A detector's constructor and its defaults, kept together."""

    factory: Callable[..., Detector]
    defaults: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    preflight: Callable[[], Any] | None = None


DETECTORS: dict[str, DetectorSpec] = {
    "retinaface": DetectorSpec(RetinaFaceDetector, {"min_confidence": 0.9}, batch_size=1,
                               preflight=ensure_retinaface_weights),
    "mtcnn": DetectorSpec(MTCNNDetector, {"min_confidence": 0.9}, batch_size=8),
}


def build_detector(name: str, min_confidence: float | None = None,
                   mtcnn_onnx: Path | None = None, threads: int | None = None) -> Detector:
    """Construct a detector by name with its defaults (``min_confidence`` overrides).

    ``mtcnn_onnx``: a folder written by ``export.py --detector mtcnn``; MTCNN then runs from
    those networks under ONNX Runtime (same faces, no TensorFlow) instead of the package, on
    ``threads`` threads (None: ONNX Runtime's default)."""
    if name not in DETECTORS:
        raise PipelineError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}")
    spec = DETECTORS[name]
    kwargs = dict(spec.defaults)
    if min_confidence is not None:
        kwargs["min_confidence"] = min_confidence
    if mtcnn_onnx is not None:
        if name != "mtcnn":
            raise PipelineError(f"--mtcnn-onnx runs MTCNN only, not {name}: pass --detector "
                                "mtcnn, or leave --mtcnn-onnx out")
        from dfpipe.extract.mtcnn_onnx import OnnxMTCNN

        return OnnxMTCNN(Path(mtcnn_onnx), kwargs["min_confidence"], threads=threads)
    return spec.factory(**kwargs)


def preflight(name: str) -> None:
    """Fail fast, before any worker starts, when a detector cannot run (e.g. no weights)."""
    if name not in DETECTORS:
        raise PipelineError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}")
    check = DETECTORS[name].preflight
    if check is not None:
        check()


def default_confidence(name: str) -> float:
    """The detector's own default confidence threshold."""
    return float(DETECTORS[name].defaults["min_confidence"])


def detect_downscaled(detector: Detector, frames: Sequence[np.ndarray],
                      max_side: int | None = DEFAULT_DETECT_MAX_SIDE,
                      retry_full: bool = True) -> list[list[Face]]:
    """Detect on copies no larger than ``max_side`` and map boxes back to full size.

    Detection cost grows with the pixels while crops are cut from the full frame, so a small
    copy is enough to find a face; a frame where the small copy shows none is detected again
    at full size (``retry_full``), so a small face in a large frame is not lost.
    """
    small, scales = [], []
    for frame in frames:
        h, w = frame.shape[:2]
        scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
        small.append(fit_within(frame, max_side) if scale < 1.0 else frame)
        scales.append(scale)
    found = [[Face(tuple(v / s for v in f.box), f.confidence,
                   None if f.landmarks is None else tuple((x / s, y / s) for x, y in f.landmarks))
              for f in faces]
             for faces, s in zip(detector.detect(small), scales, strict=True)]
    missed = [i for i, (faces, s) in enumerate(zip(found, scales, strict=True))
              if not faces and s < 1.0] if retry_full else []
    if missed:
        for i, faces in zip(missed, detector.detect([frames[i] for i in missed]), strict=True):
            found[i] = list(faces)
    return found


def select_faces(faces: list[Face], which: str = "largest") -> list[Face]:
    """Keep the largest face, or all of them largest first."""
    ordered = sorted(faces, key=lambda f: f.area, reverse=True)
    if which == "largest":
        return ordered[:1]
    if which == "all":
        return ordered
    raise ValueError(f"faces must be 'largest' or 'all', not {which!r}")


def square_box(box: tuple[float, float, float, float], margin: float, frame_w: int,
               frame_h: int) -> tuple[int, int, int, int]:
    """A square of side ``margin * face size`` centred on the face, kept inside the frame.

    A square that would cross the border is shifted back inside (not squashed), and one
    larger than the frame shrinks to the frame's short side, so faces are never distorted.
    """
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * margin
    side = int(round(min(side, frame_w, frame_h)))
    side = max(side, 1)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    left = min(max(left, 0), frame_w - side)
    top = min(max(top, 0), frame_h - side)
    return left, top, left + side, top + side


def crop_face(frame: np.ndarray, box: tuple[float, float, float, float],
              margin: float = DEFAULT_MARGIN, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The face crop every stage uses: square with margin, resized to ``size`` x ``size``."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = square_box(box, margin, w, h)
    crop = frame[y1:y2, x1:x2]
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def encode_crop(crop: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB crop as the JPEG bytes preprocess saves (the app scores the same bytes)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode crop as JPEG")
    return buf.tobytes()

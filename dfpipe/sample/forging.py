"""Face manipulations for the built-in sample: self-blended images and face swaps.

Both are genuine blending forgeries, the kind a detector must learn to spot: a face region
is replaced by an altered, slightly misaligned copy (of the same face for self-blending,
Shiohara & Yamasaki, CVPR 2022; of another person's face, colour-matched and at a lower
resolution, for a swap), pasted back through the soft inner-face mask of
:mod:`dfpipe.train.sbi.blend`,
the blending train.py's ``--sbi`` uses too. The seams, the resolution drop and the residual
colour mismatch are what separate these fakes from the photograph they were made from.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.train.sbi import blend as sbi

log = logging.getLogger(__name__)

# MTCNN's landmark names, in the order kept here (left/right as seen in the image).
LANDMARKS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
FRONTAL_MAX_YAW = 0.2  # |nose offset from the eye midpoint| / eye distance for a frontal face
# The demo's fakes blend at full strength (see self_blend).
DEMO_RATIOS: tuple[float, ...] = (1.0,)

@dataclass(frozen=True)
class Face:
    """Where a face is in a photograph: MTCNN box (x1, y1, x2, y2) and 5 landmarks (x, y)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray  # (5, 2) float32, in LANDMARKS order

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def yaw(self) -> float:
        """How far the nose sits from the eye midpoint, in eye distances (0 = frontal)."""
        left, right, nose = self.landmarks[0], self.landmarks[1], self.landmarks[2]
        eye_dist = max(float(np.linalg.norm(right - left)), 1.0)
        return float((nose[0] - (left[0] + right[0]) / 2) / eye_dist)

    @property
    def frontal(self) -> bool:
        return abs(self.yaw) < FRONTAL_MAX_YAW

    def mirrored(self, image_width: int) -> Face:
        """The same face in the horizontally flipped photo (left/right landmarks swapped)."""
        x1, y1, x2, y2 = self.box
        points = self.landmarks.copy()
        points[:, 0] = image_width - 1 - points[:, 0]
        return Face(box=(image_width - 1 - x2, y1, image_width - 1 - x1, y2),
                    landmarks=points[[1, 0, 2, 4, 3]])


_DETECTOR: list[Any] = []
_FACE_CACHE: dict[str, Face] = {}


def mtcnn_detector() -> Any:
    """One shared MTCNN instance (building it loads TensorFlow, so only once)."""
    if not _DETECTOR:
        from mtcnn import MTCNN

        _DETECTOR.append(MTCNN())
    return _DETECTOR[0]


def locate_face(photo: np.ndarray) -> Face:
    """The most confident face MTCNN finds in an RGB photo; cached by the photo's content."""
    key = hashlib.sha1(photo.tobytes() + str(photo.shape).encode()).hexdigest()
    if key not in _FACE_CACHE:
        found = mtcnn_detector().detect_faces(np.ascontiguousarray(photo), box_format="xyxy")
        if not found:
            raise PipelineError("no face found in the sample photograph (MTCNN): "
                                "pass a photo with a clearly visible face")
        best = max(found, key=lambda d: float(d["confidence"]))
        box = tuple(float(v) for v in best["box"])
        points = np.array([best["keypoints"][k] for k in LANDMARKS], dtype=np.float32)
        _FACE_CACHE[key] = Face(box=box, landmarks=points)  # type: ignore[arg-type]
        log.debug("face at %s (yaw %.2f)", box, _FACE_CACHE[key].yaw)
    return _FACE_CACHE[key]


def reinhard_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray,
                      strength: float = 1.0) -> np.ndarray:
    """Match src's colour statistics (mean, std per LAB channel) to ref's inside the mask
    (Reinhard et al. 2001); strength < 1 leaves part of the original mismatch."""
    inside = mask > 0.5
    if not inside.any():
        return src
    src_lab = cv2.cvtColor(src.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref_lab = cv2.cvtColor(ref.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    s_mu, s_sd = src_lab[inside].mean(0), src_lab[inside].std(0) + 1e-3
    r_mu, r_sd = ref_lab[inside].mean(0), ref_lab[inside].std(0) + 1e-3
    matched = (src_lab - s_mu) * (r_sd / s_sd) + r_mu
    out_lab = src_lab + strength * (matched - src_lab)
    out = cv2.cvtColor(out_lab.astype(np.float32), cv2.COLOR_LAB2RGB) * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


def low_resolution(image: np.ndarray, face_width: float, generated_width: float) -> np.ndarray:
    """Resample as if the face were generated at ``generated_width`` pixels and upscaled,
    the resolution drop left by face-swap generators."""
    factor = min(1.0, generated_width / max(face_width, 1.0))
    if factor >= 0.999:
        return image
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _signed(rng: np.random.Generator, lo: float, hi: float, size: int | None = None) -> Any:
    """A random magnitude in [lo, hi] with a random sign: a shift that is never negligible."""
    return rng.uniform(lo, hi, size=size) * rng.choice([-1.0, 1.0], size=size)


def demo_transform(image: np.ndarray, rng: np.random.Generator,
                   generated_width: float, face_width: float) -> np.ndarray:
    """The demo's source transform: hue, saturation, brightness and RGB balance shifted by
    clearly visible amounts, and the resolution a generator would have made the face at."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + _signed(rng, 2, 6)) % 180
    hsv[..., 1] *= 1.0 + _signed(rng, 0.1, 0.25)
    hsv[..., 2] = hsv[..., 2] * (1.0 + _signed(rng, 0.05, 0.12)) + _signed(rng, 4, 10)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out += _signed(rng, 5, 14, size=3)
    return low_resolution(np.clip(out, 0, 255).astype(np.uint8), face_width, generated_width)


def self_blend(photo: np.ndarray, face: Face, rng: np.random.Generator,
               generated_width: float) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended image made by :func:`dfpipe.train.sbi.blend.self_blend`, the blend train.py's
    ``--sbi`` uses (same hull mask, deformation, blur, shift and blend), with the demo's
    stronger :func:`demo_transform` kept on the pasted face (the real video films the
    untouched photo) and full-strength masks (:data:`DEMO_RATIOS`): the demo's tiny
    detector has a few videos and a minute to learn. Returns (fake photo, the mask used)."""
    def transform(image: np.ndarray, r: np.random.Generator) -> np.ndarray:
        return demo_transform(image, r, generated_width, face.width)

    made = sbi.self_blend(photo, face.landmarks, rng, keep_target=True, ratios=DEMO_RATIOS,
                          transform=transform)
    return made.blended, made.mask


def face_swap(target: np.ndarray, target_face: Face, donor: np.ndarray, donor_face: Face,
              rng: np.random.Generator, generated_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Another person's face on the target: donor aligned on the 5 landmarks (similarity
    transform), regenerated at lower resolution, colour-matched and blended in.
    Returns (fake photo, the mask used)."""
    h, w = target.shape[:2]
    matrix, _ = cv2.estimateAffinePartial2D(donor_face.landmarks, target_face.landmarks,
                                            method=cv2.LMEDS)
    if matrix is None:
        raise PipelineError("cannot align the donor face on the target (degenerate landmarks)")
    warped = cv2.warpAffine(donor, matrix, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT101)
    warped = low_resolution(warped, target_face.width, generated_width)
    mask = sbi.soft_mask(target.shape, sbi.inner_face_outline(target_face.landmarks), rng)
    warped = reinhard_transfer(warped, target, mask, strength=rng.uniform(0.8, 1.0))
    return sbi.blend(target, warped, mask), mask

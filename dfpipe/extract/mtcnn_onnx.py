"""MTCNN under ONNX Runtime: the ``mtcnn`` package's detector without TensorFlow.

Why: ``mtcnn`` imports TensorFlow (seconds at start-up) only to run three small networks. Here
those networks run as ONNX (written once by ``python export.py --detector mtcnn``) and the rest
of the package's pipeline is ported to numpy, step for step (mtcnn 1.0.0): the image pyramid
with TF's area resize, P-Net cell boxes and their regression, its NMS (a box is dropped when
any higher-scored box overlaps it, dropped or not), the squared boxes, the bilinear patches of
``crop_and_resize`` for R-Net (24 px) and O-Net (48 px), the landmarks, and the final
integer boxes. Defaults are the package's. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.extract.faces import Detector, Face, five_points

log = logging.getLogger(__name__)

NETWORKS: tuple[str, ...] = ("pnet", "rnet", "onet")
MTCNN_INFO = "mtcnn.json"
DEFAULT_MTCNN_DIR = Path("models") / "mtcnn_onnx"
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class MTCNNParams:
    """The ``mtcnn`` package's own defaults (``MTCNN.detect_faces`` keyword arguments)."""

    min_face_size: int = 20
    min_size: int = 12
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet1: float = 0.5
    nms_pnet2: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7


class OnnxMTCNN(Detector):
    """MTCNN from the three exported networks in ``folder``; same faces as the package's."""

    name = "mtcnn"

    def __init__(self, folder: Path = DEFAULT_MTCNN_DIR, min_confidence: float = 0.9,
                 params: MTCNNParams | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / MTCNN_INFO).is_file():
            raise PipelineError(f"no exported MTCNN in {folder} (no {MTCNN_INFO}): write it "
                                f"with python export.py --detector mtcnn --output {folder}")
        self.info = json.loads((folder / MTCNN_INFO).read_text(encoding="utf-8"))
        self.min_confidence = min_confidence
        self.params = params or MTCNNParams()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # many small runs per frame: spinning worker threads between them fight OpenCV, numpy
        # and other processes for 2 cores (2x slower per frame on a busy machine)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._nets = {name: ort.InferenceSession(str(folder / f"{name}.onnx"), options,
                                                 providers=["CPUExecutionProvider"])
                      for name in NETWORKS}

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self._faces(self.boxes(frame)) for frame in frames]

    def _faces(self, rows: np.ndarray) -> list[Face]:
        faces = []
        for row in rows:
            box = tuple(float(v) for v in _integer_box(row[1:5]))
            points = np.round(row[6:16]).astype(int)
            keypoints = {name: (points[i], points[i + 5]) for i, name in enumerate(KEYPOINTS)}
            if float(row[5]) >= self.min_confidence:
                faces.append(Face(box, float(row[5]), five_points(keypoints)))
        return faces

    def boxes(self, frame: np.ndarray) -> np.ndarray:
        """Rows ``[0, x1, y1, x2, y2, confidence, 5 landmark x, 5 landmark y]`` (frame pixels,
        unrounded, clipped to the frame), as the package's ``output_type="numpy"``."""
        image = (np.asarray(frame, dtype=np.float32) - 127.5) / 128.0
        h, w = image.shape[:2]
        rows = self._proposals(image)
        if len(rows):
            rows = self._refine(image, rows, "rnet", 24)
        if len(rows):
            rows = self._refine(image, rows, "onet", 48)
        if not len(rows):
            return np.empty((0, 16))
        rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, w - 1)
        rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], 0, h - 1)
        return rows

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: regressed cell boxes, NMS per scale, then across scales."""
        p = self.params
        h, w = image.shape[:2]
        found = []
        for scale in pyramid_scales(w, h, p.min_face_size, p.scale_factor, p.min_size):
            small = area_resize(image, int(h * scale), int(w * scale))
            reg, cls = self._nets["pnet"].run(None, {"image": small[None]})
            rows = cell_boxes(reg[0], cls[0], p.threshold_pnet)
            rows[:, 1:5] /= scale
            found.append(nms(rows, p.nms_pnet1, "union", sort=False))
        rows = np.concatenate(found) if found else np.empty((0, 6))
        if not len(rows):
            return rows
        return square(nms(rows, p.nms_pnet2, "union", sort=True))

    def _refine(self, image: np.ndarray, rows: np.ndarray, net: str, size: int) -> np.ndarray:
        """R-Net or O-Net on bilinear patches of the boxes: new scores, regressed boxes, NMS."""
        p = self.params
        patches = crop_and_resize(image, rows[:, 1:5], size)
        outputs = self._nets[net].run(None, {"image": patches})
        offsets, scores = outputs[0], outputs[-1]
        rows = rows[:, :6].copy()
        if net == "onet":
            landmarks = _landmarks(outputs[1], rows)
        rows[:, 5] = scores[:, -1]
        widths = rows[:, 3] - rows[:, 1] + 1
        heights = rows[:, 4] - rows[:, 2] + 1
        rows[:, 1:5] += offsets * np.stack([widths, heights, widths, heights], axis=-1)
        if net == "rnet":
            rows = rows[rows[:, 5] > p.threshold_rnet]
            return square(nms(rows, p.nms_rnet, "union", sort=True)) if len(rows) else rows
        rows = np.concatenate([rows, landmarks], axis=-1)
        rows = rows[rows[:, 5] > p.threshold_onet]
        return nms(rows, p.nms_onet, "min", sort=True) if len(rows) else rows


def pyramid_scales(width: int, height: int, min_face_size: int, scale_factor: float,
                   min_size: int = 12) -> np.ndarray:
    """The package's ``build_scale_pyramid``: from 12/min_face_size down by scale_factor."""
    count = round(-((np.log(min(width, height) / min_size) / np.log(scale_factor)) + 1))
    return (min_size / min_face_size) * scale_factor ** np.arange(count)


def area_resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``tf.image.resize(method=AREA)`` of an HxWxC float image: each output pixel averages the
    input pixels its area covers, partial ones by their overlap. OpenCV's INTER_AREA computes
    the same average (both within 4e-5 of each other on the pyramid of a 640x360 frame, as TF
    is of itself in float32), 5x faster than a numpy port of TF's loop."""
    return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)


def cell_boxes(reg: np.ndarray, cls: np.ndarray, threshold: float, stride: int = 2,
               cell: int = 12) -> np.ndarray:
    """P-Net cells scoring above ``threshold`` as regressed boxes ``[0, x1, y1, x2, y2, score]``
    in the scaled image, best first (the package's ``generate_bounding_box``)."""
    ys, xs = np.where(cls[:, :, 1] > threshold)
    score = cls[ys, xs, 1]
    dx1, dy1, dx2, dy2 = reg[ys, xs].T
    size = cell - 1
    x1, y1 = xs * stride + 1 + dx1 * size, ys * stride + 1 + dy1 * size
    x2, y2 = xs * stride + cell + dx2 * size, ys * stride + cell + dy2 * size
    rows = np.stack([np.zeros_like(score), x1, y1, x2, y2, score], axis=0).T.astype(np.float64)
    return rows[np.argsort(rows[:, -1])[::-1]]


def nms(rows: np.ndarray, threshold: float, method: str, sort: bool) -> np.ndarray:
    """The package's NMS: with rows best first, a row goes when any earlier row overlaps it
    above ``threshold`` (IoU for ``union``, overlap / smaller area for ``min``)."""
    if sort:
        rows = rows[np.argsort(rows[:, 5])[::-1]]
    if not len(rows):
        return rows
    boxes = rows[:, 1:5]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inter_w = np.maximum(0, np.minimum(boxes[None, :, 2], boxes[:, None, 2])
                         - np.maximum(boxes[None, :, 0], boxes[:, None, 0]))
    inter_h = np.maximum(0, np.minimum(boxes[None, :, 3], boxes[:, None, 3])
                         - np.maximum(boxes[None, :, 1], boxes[:, None, 1]))
    inter = inter_w * inter_h
    if method == "union":
        overlap = inter / (area[:, None] + area[None, :] - inter)
    else:
        overlap = inter / np.minimum(area[:, None], area[None, :])
    earlier = np.triu(np.ones((len(rows), len(rows)), dtype=bool), k=1)
    return rows[~((overlap > threshold) & earlier).any(axis=0)]


def square(rows: np.ndarray) -> np.ndarray:
    """Each box grown to a square on its centre (the package's ``resize_to_square``)."""
    rows = rows.copy()
    w, h = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    side = np.maximum(w, h)
    rows[:, 1] += w * 0.5 - side * 0.5
    rows[:, 2] += h * 0.5 - side * 0.5
    rows[:, 3], rows[:, 4] = rows[:, 1] + side, rows[:, 2] + side
    return rows


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.crop_and_resize`` (bilinear, 0 outside the image) of boxes (x1, y1, x2, y2)
    given in pixels and normalised by the image size, as the package does."""
    h, w = image.shape[:2]
    steps = np.arange(size) / (size - 1)
    y1, x1 = boxes[:, 1] / h * (h - 1), boxes[:, 0] / w * (w - 1)
    y2, x2 = boxes[:, 3] / h * (h - 1), boxes[:, 2] / w * (w - 1)
    ys = y1[:, None] + steps[None, :] * (y2 - y1)[:, None]
    xs = x1[:, None] + steps[None, :] * (x2 - x1)[:, None]
    y_ok, x_ok = (ys >= 0) & (ys <= h - 1), (xs >= 0) & (xs <= w - 1)
    top, left = np.floor(ys).astype(int), np.floor(xs).astype(int)
    bottom, right = np.ceil(ys).astype(int), np.ceil(xs).astype(int)
    dy, dx = (ys - top)[:, :, None, None], (xs - left)[:, None, :, None]
    top, bottom = np.clip(top, 0, h - 1), np.clip(bottom, 0, h - 1)
    left, right = np.clip(left, 0, w - 1), np.clip(right, 0, w - 1)

    def pick(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return image[r[:, :, None], c[:, None, :]]

    upper = pick(top, left) + (pick(top, right) - pick(top, left)) * dx
    lower = pick(bottom, left) + (pick(bottom, right) - pick(bottom, left)) * dx
    patches = upper + (lower - upper) * dy
    patches *= (y_ok[:, :, None] & x_ok[:, None, :])[..., None]
    return patches.astype(np.float32)


def _landmarks(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """O-Net's landmarks (fractions of the box) in pixels, on the box before regression."""
    w = rows[:, 3:4] - rows[:, 1:2] + 1
    h = rows[:, 4:5] - rows[:, 2:3] + 1
    out = points.astype(np.float64).copy()
    out[:, 0:5] = w * out[:, 0:5] + rows[:, 1:2] - 1
    out[:, 5:10] = h * out[:, 5:10] + rows[:, 2:3] - 1
    return out


def _integer_box(box: np.ndarray) -> np.ndarray:
    """The package's JSON box (``box_format="xyxy"``): x1, y1, x2, y2 rounded to integers."""
    return np.asarray(box, dtype=np.float64).round().astype(int)


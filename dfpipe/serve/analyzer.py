"""Judge a new video with a trained detector: the one inference path of the app.

video -> sampled frames -> faces -> crops -> P(fake) per crop -> one score per video -> verdict.
Every step reuses what preprocess and evaluate use: the same frame sampling
(:mod:`dfpipe.extract.video`), detector and square crop
(:mod:`dfpipe.extract.faces`) with the settings the
model was trained on (its metadata), crops scored as the JPEG bytes preprocess would have
saved, the same scoring and per-video rule (:mod:`dfpipe.scoring.crops`) and the same threshold
resolution as evaluate. The result is a plain, JSON-ready dict.

This module orchestrates; the frames come from :mod:`dfpipe.serve.frames` (within the per-video
limits), the verdict from :mod:`dfpipe.scoring.verdict`, and batches of videos are judged by
:mod:`dfpipe.serve.batch`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import decode_jpeg, feed_size_of, to_feed_size
from dfpipe.extract import faces as facelib
from dfpipe.extract.video import VideoError, open_video
from dfpipe.scoring.crops import DEFAULT_BATCH_SIZE, score_crops
from dfpipe.scoring.operating import resolve_operating_point
from dfpipe.scoring.verdict import (
    call_faces,
    frame_scores,
    judge,
)
from dfpipe.serve.crop_settings import (
    recorded_detector,
    settings_from_metadata,
    unknown_crop_settings,
)
from dfpipe.serve.frames import Deadline, Limits, expected_samples, feed
from dfpipe.serve.overlap import OVERLAP_CHUNK, BackgroundScorer
from dfpipe.split import quality

log = logging.getLogger(__name__)



Progress = Callable[[str, int, int], None]
CropSink = Callable[[int, np.ndarray, bytes], None]


@dataclass
class Analysis:
    """A video's result (a JSON-ready dict) and, when asked for, the crops the model scored."""

    result: dict[str, Any]
    crops: list[np.ndarray] = field(default_factory=list)


class Analyzer:
    """A loaded detector and face detector, ready to judge videos one after another.

    Build it once per process (:meth:`load`). ``analyze`` may run from several threads: each
    thread gets its own face detector and model calls are serialised by a lock.
    """

    def __init__(self, model: Any, metadata: dict[str, Any], *, model_path: Path | None = None,
                 detector: str | None = None, aggregate: str | None = None,
                 threshold: float | None = None, every: int | None = None,
                 frames: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 tta: str | None = None, detect_max_side: int | None = None) -> None:
        if batch_size < 1:
            raise PipelineError(f"--batch-size must be at least 1, got {batch_size}")
        self.model = model
        self.metadata = metadata
        self.model_path = Path(model_path) if model_path else None
        self.settings, self.settings_source = settings_from_metadata(
            metadata, detector, every, frames, detect_max_side)
        point = resolve_operating_point(metadata, aggregate, threshold)
        self.threshold, self.threshold_source = point.threshold, point.threshold_source
        self.crop_threshold, self.rule = point.crop_threshold, point.aggregate
        self.crops_per_video = point.crops_per_video
        self.tta = tta or (point.block or {}).get("tta") or "none"
        self.feed = feed_size_of(metadata)
        self.quality = quality.rules_of(metadata)
        self.crop_unknown = unknown_crop_settings(metadata)
        self.crop_notice = ""
        if self.crop_unknown:
            used = ", ".join(f"{k} {getattr(self.settings, k)}" for k in self.crop_unknown)
            self.crop_notice = (f"crop settings unknown: the model's metadata does not record "
                                f"{', '.join(self.crop_unknown)} (trained on crops made "
                                f"elsewhere?); new videos are cropped with {used}, which may "
                                "differ from its training crops")
            log.warning("%s", self.crop_notice)
        self.batch_size = batch_size
        self.model_lock = threading.Lock()
        self.detector_factory: Callable[[], facelib.Detector] | None = None
        self._local = threading.local()
        self.trained_detector = (self.settings_source.startswith("the model metadata")
                                 and recorded_detector(metadata))

    @classmethod
    def load(cls, model_path: Path, runtime: str = "auto", mtcnn_onnx: Path | None = None,
             precision: str | None = None, **options: Any) -> Analyzer:
        """Load the model file once (checked against its metadata) and prepare the detector.

        With an ONNX model (``runtime`` onnx, or a .onnx file) faces are found by MTCNN's
        exported networks (``mtcnn_onnx``, written by ``export.py --detector mtcnn``) and
        TensorFlow is never imported. The TF runtime uses those networks too when
        ``mtcnn_onnx`` is given (faster than the ``mtcnn`` package, the same boxes).
        ``precision``: float32 (None), bfloat16 or auto (:mod:`dfpipe.models.precision`).
        """
        from dfpipe.models.onnxrun import is_onnx_model, load_any
        from dfpipe.models.saving import read_metadata

        if runtime != "onnx" and Path(model_path).suffix.lower() != ".onnx":
            settings, _ = settings_from_metadata(read_metadata(Path(model_path)),
                                                 options.get("detector"), options.get("every"),
                                                 options.get("frames"))
            if mtcnn_onnx is not None and settings.detector != "mtcnn":
                raise PipelineError(f"--mtcnn-onnx drives MTCNN, but the detector is "
                                    f"{settings.detector}: pass --detector mtcnn, or leave "
                                    "--mtcnn-onnx out")
            facelib.preflight(settings.detector)  # cheap checks before the model loads
        model, meta = load_any(Path(model_path), runtime, precision=precision)
        analyzer = cls(model, meta, model_path=Path(model_path), **options)
        name = analyzer.settings.detector
        if is_onnx_model(model) or mtcnn_onnx is not None:
            if name != "mtcnn":
                raise PipelineError(f"the ONNX runtime finds faces with MTCNN only ({name} "
                                    "needs TensorFlow): pass --detector mtcnn, or --runtime tf")
            from dfpipe.extract.mtcnn_onnx import DEFAULT_MTCNN_DIR, OnnxMTCNN

            folder = Path(mtcnn_onnx or DEFAULT_MTCNN_DIR)
            confidence = analyzer.settings.min_confidence
            OnnxMTCNN(folder, confidence)  # fails now, in one line, if it was never exported
            analyzer.detector_factory = lambda: OnnxMTCNN(folder, confidence)
        return analyzer

    def detector(self) -> facelib.Detector:
        """This thread's face detector, built on first use."""
        det = getattr(self._local, "detector", None)
        if det is None:
            det = (self.detector_factory() if self.detector_factory else
                   facelib.build_detector(self.settings.detector, self.settings.min_confidence))
            self._local.detector = det
        return det

    def warm_up(self) -> None:
        """Build this thread's face detector and trace the model once, so the first video
        uploaded is not charged for it."""
        size = self.settings.size
        self.detector().detect([np.zeros((size, size, 3), np.uint8)])
        with self.model_lock:
            score_crops(self.model, [np.zeros((size, size, 3), np.uint8)], self.batch_size)

    def describe(self) -> dict[str, Any]:
        """What is loaded and how videos will be judged (for /api/model and reports)."""
        meta = self.metadata
        return {
            "name": self.model_path.name if self.model_path else None,
            "backbone": meta.get("backbone"), "input_size": meta.get("input_size"),
            "class_names": meta.get("class_names"), "created": meta.get("created"),
            "val_auc": meta.get("val_auc"),
            "threshold": self.threshold, "threshold_source": self.threshold_source,
            "crop_threshold": self.crop_threshold, "aggregate": self.rule,
            "batch_size": self.batch_size,
            "precision": self.metadata.get("inference_precision", "float32"),
            "face_detector_runtime": "onnx" if self.detector_factory else "package",
            "detector": self.settings.detector, "trained_with_detector": self.trained_detector,
            "crop": {"detector": self.settings.detector, **self.settings.record()},
            "crop_source": self.settings_source,
            "crop_from_metadata": isinstance(meta.get("crop"), dict),
            "crop_unknown": self.crop_unknown,
            "quality_rules": meta.get("quality"),
            "metadata": meta,
        }

    def analyze(self, path: Path, progress: Progress | None = None,
                on_crop: CropSink | None = None, keep_crops: bool = False,
                limits: Limits | None = None) -> Analysis:
        """Judge one video; raises VideoError when it cannot be decoded at all, and
        LimitExceeded (a VideoError) when it breaks a limit that refuses it.

        ``progress(stage, done, total)`` is called as frames are read and crops scored;
        ``on_crop(index, rgb, jpeg)`` receives each crop as the model saw it and its JPEG bytes.
        ``limits`` bounds the work (frames decoded, faces scored, frame size, wall clock).
        """
        start = time.perf_counter()
        limits = limits or Limits()
        deadline = Deadline(limits.timeout_s)
        path = Path(path)
        cap, info = open_video(path)
        cap.release()
        s = self.settings
        expected = expected_samples(info.reported_frames, s.every, s.frames, limits.max_frames)
        timing = {"decode_s": 0.0, "decode_wait_s": 0.0, "detect_s": 0.0, "crop_s": 0.0,
                  "classify_s": 0.0}
        faces: list[dict[str, Any]] = []
        frames: list[dict[str, Any]] = []
        scores: list[float] = []
        kept: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        batch: list[tuple[int, np.ndarray]] = []
        det_batch = facelib.DETECTORS[s.detector].batch_size
        max_faces = limits.max_faces
        capped = {"faces": False}

        def score(chunk: list[np.ndarray]) -> np.ndarray:
            t0 = time.perf_counter()
            with self.model_lock:
                out = score_crops(self.model, chunk, self.batch_size, tta=self.tta)
            timing["classify_s"] += time.perf_counter() - t0
            return out

        scorer = BackgroundScorer(score)
        chunk = min(self.batch_size, OVERLAP_CHUNK)

        def classify() -> None:
            scorer.submit(pending)
            pending.clear()

        def detect() -> None:
            t0 = time.perf_counter()
            found = facelib.detect_downscaled(self.detector(), [f for _, f in batch],
                                              s.detect_max_side)
            t1 = time.perf_counter()
            timing["detect_s"] += t1 - t0
            for (index, frame), per_frame in zip(batch, found, strict=True):
                chosen = facelib.select_faces(per_frame, s.faces)
                if max_faces is not None and len(chosen) > max_faces - len(faces):
                    chosen = chosen[:max_faces - len(faces)]
                    capped["faces"] = True
                if capped["faces"] and not chosen:
                    break
                frames.append({"frame": index, "time_s": _seconds(index, info.fps),
                               "faces": len(chosen), "score": None})
                for face_no, face in enumerate(chosen):
                    jpeg = facelib.encode_crop(facelib.crop_face(frame, face.box, s.margin,
                                                                 s.size))
                    rgb = to_feed_size(decode_jpeg(jpeg), self.feed)
                    k = len(faces)
                    faces.append({"index": k, "frame": index, "face": face_no,
                                  "time_s": _seconds(index, info.fps),
                                  "box": [round(v, 1) for v in face.box],
                                  "face_size": round(face.size, 1),
                                  "confidence": round(face.confidence, 4),
                                  "sharpness": round(quality.jpeg_sharpness(jpeg), 3)})
                    if on_crop is not None:
                        on_crop(k, rgb, jpeg)
                    if keep_crops:
                        kept.append(rgb)
                    pending.append(rgb)
            timing["crop_s"] += time.perf_counter() - t1
            batch.clear()
            if len(pending) >= chunk:
                classify()
            deadline.check()

        def full() -> bool:
            return max_faces is not None and len(faces) >= max_faces

        try:
            with closing(feed(path, s.every, s.frames, info, limits, deadline, timing,
                              det_batch)) as sampled:
                for index, frame in sampled:
                    batch.append((index, frame))
                    if len(batch) >= det_batch:
                        detect()
                        _report(progress, "frames", len(frames), max(expected, len(frames)))
                        if full():
                            capped["faces"] = True
                            break
            if batch and not capped["faces"]:
                detect()
            faces_capped = capped["faces"]
            if pending:
                classify()
            scores.extend(scorer.scores())
        finally:
            scorer.close()  # also when a limit or a bad frame stopped the analysis
        deadline.check()
        _report(progress, "frames", len(frames), len(frames))
        call_faces(faces, scores, self.crop_threshold)
        frame_scores(frames, faces)
        timing["total_s"] = time.perf_counter() - start
        result = self._result(path, info, frames, faces, timing)
        if info.capped:
            result["warnings"].append(
                f"stopped reading after {limits.max_frames} frames (the frame limit per "
                "video): judged on those frames only")
        if faces_capped:
            result["warnings"].append(
                f"stopped after {max_faces} face crops (the face limit per video): judged on "
                "those crops only")
        result["video"]["frames_capped"] = bool(info.capped)
        result["video"]["faces_capped"] = faces_capped
        return Analysis(result, kept)

    def _result(self, path: Path, info: Any, frames: list[dict[str, Any]],
                faces: list[dict[str, Any]], timing: dict[str, float]) -> dict[str, Any]:
        s = self.settings
        duration = info.frames_read / info.fps if info.fps > 0 else None
        video = {"name": path.name, "fps": round(info.fps, 3), "width": info.width,
                 "height": info.height, "frames_reported": info.reported_frames,
                 "frames_read": info.frames_read,
                 "duration_s": round(duration, 3) if duration is not None else None,
                 "frames_sampled": len(frames),
                 "frames_with_face": sum(1 for f in frames if f["faces"]), "faces": len(faces)}
        warnings = []
        if (info.reported_frames and info.frames_read < info.reported_frames
                and not info.capped):
            warnings.append(f"the video ended early: the container announces "
                            f"{info.reported_frames} frames but {info.frames_read} could be "
                            "decoded (truncated or damaged file); judged on what was read")
        if self.crop_unknown:
            warnings.append(self.crop_notice)
            log.warning("%s: %s", path.name, self.crop_notice)
        if self.trained_detector and self.trained_detector != s.detector:
            warnings.append(f"faces found by {s.detector} but the model was trained on "
                            f"{self.trained_detector} crops")
        result: dict[str, Any] = {
            "video": video, "threshold": self.threshold,
            "threshold_source": self.threshold_source, "aggregate": self.rule, "tta": self.tta,
            "precision": self.metadata.get("inference_precision", "float32"),
            "settings": {"detector": s.detector, **s.record()},
            "settings_source": self.settings_source, "model": _model_summary(self),
            "quality_rules": self.metadata.get("quality"), "crop_unknown": self.crop_unknown,
            "frames": frames, "faces": faces,
            "timing": {k: round(v, 4) for k, v in timing.items()},
        }
        if not faces and video["frames_sampled"] == 0:
            raise VideoError("no frame could be decoded (corrupt or truncated file)")
        kept = self._quality_kept(faces, warnings) if faces else None
        result.update(judge(faces, self.threshold, self.rule, video["frames_sampled"],
                            s.min_confidence, kept, self.crops_per_video))
        if faces and len(faces) < 3:
            warnings.append(f"judged on {len(faces)} face crop(s) only")
        result["warnings"] = warnings
        return result

    def _quality_kept(self, faces: list[dict[str, Any]], warnings: list[str]) -> list[int]:
        """Faces the training quality rules keep (marked ``quality_ok``); all of them, with a
        warning, when none passes or the model records no rules."""
        kept = quality.kept_faces(faces, self.quality)
        passing = set(kept)
        for i, face in enumerate(faces):
            face["quality_ok"] = i in passing
        if not kept:
            warnings.append(f"none of the {len(faces)} face crops passes the training quality "
                            "rules: judged on all of them")
            return list(range(len(faces)))
        return kept


def _model_summary(analyzer: Analyzer) -> dict[str, Any]:
    meta = analyzer.metadata
    return {"name": analyzer.model_path.name if analyzer.model_path else None,
            "backbone": meta.get("backbone"), "input_size": meta.get("input_size"),
            "created": meta.get("created")}


def _seconds(index: int, fps: float) -> float | None:
    return round(index / fps, 3) if fps > 0 else None


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)

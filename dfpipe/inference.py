"""Judge a new video with a trained detector: the one inference path of the app.

video -> sampled frames -> faces -> crops -> P(fake) per crop -> one score per video -> verdict.
Every step reuses what preprocess and evaluate use: the same frame sampling
(:mod:`dfpipe.video`), detector and square crop (:mod:`dfpipe.faces`) with the settings the
model was trained on (its metadata), crops scored as the JPEG bytes preprocess would have
saved, the same scoring and per-video rule (:mod:`dfpipe.scoring`) and the same threshold
resolution as evaluate. The result is a plain, JSON-ready dict.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from . import faces as facelib
from .errors import PipelineError
from .evaluation import DEFAULT_RULE, resolve_threshold
from .extract import Settings
from .labels import VIDEO_EXTENSIONS
from .scoring import DEFAULT_BATCH_SIZE, aggregate_videos, aggregator, score_crops
from .video import VideoError, iter_sampled_frames, open_video

log = logging.getLogger(__name__)

VERDICT_FAKE = "FAKE"
VERDICT_REAL = "REAL"
VERDICT_NO_FACE = "NO FACE FOUND"
BORDERLINE = 0.1
"""A video score closer than this to the threshold is flagged as borderline."""
FALLBACK_DETECTOR = "mtcnn"
SETTING_KEYS = tuple(f.name for f in fields(Settings))
ROW_FIELDS: tuple[str, ...] = (
    "path", "status", "verdict", "score", "threshold", "margin", "borderline", "aggregate",
    "faces", "frames_sampled", "frames_with_face", "frames_read", "fps", "duration_s", "width",
    "height", "seconds", "decode_s", "detect_s", "classify_s", "message")

PREFETCH_BYTES = 256 * 1024 * 1024
_END = object()

Progress = Callable[[str, int, int], None]
CropSink = Callable[[int, np.ndarray, bytes], None]


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB pixels of JPEG bytes, decoded as :func:`dfpipe.images.read_rgb` decodes a file."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode JPEG bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def settings_from_metadata(meta: dict[str, Any], detector: str | None = None,
                           every: int | None = None,
                           frames: int | None = None) -> tuple[Settings, str]:
    """The crop settings the model was trained with, and a sentence saying where they came from.

    The metadata's ``crop`` holds the preprocess settings (``crop.settings``, or the flat keys
    ``margin``/``size``/``detector``/``sampling``); when it is null, preprocess's defaults are
    used and the sentence says so. ``detector``/``every``/``frames`` override (and are named).
    """
    crop = meta.get("crop")
    values: dict[str, Any] = {}
    if isinstance(crop, dict):
        for part in (crop.get("sampling"), crop, crop.get("settings")):
            if isinstance(part, dict):
                values.update({k: v for k, v in part.items()
                               if k in SETTING_KEYS and v is not None})
        source = "the model metadata (crop settings recorded by preprocess)"
        missing = [k for k in ("margin", "size", "detector") if k not in values]
        if missing:
            source += f"; {', '.join(missing)} not recorded, preprocess defaults used"
    else:
        source = ("preprocess defaults: the model metadata records no crop settings (trained on "
                  "a folder without a preprocess report), so crops may differ from training")
    overrides = []
    if detector:
        if values.get("detector") != detector:
            values.pop("min_confidence", None)  # the recorded one belongs to another detector
        values["detector"] = detector
        overrides.append(f"detector {detector}")
    if every or frames:
        values["every"], values["frames"] = every, frames
        overrides.append(f"every {every}" if every else f"frames {frames}")
    if overrides:
        source += f"; overridden on the command line: {', '.join(overrides)}"
    if "detector" not in values:
        values["detector"] = FALLBACK_DETECTOR
        source += (f"; detector not recorded: {FALLBACK_DETECTOR} (its weights ship with it, so "
                   "it runs offline)")
    name = values["detector"]
    if name not in facelib.DETECTORS:
        raise PipelineError(f"detector {name!r} is unknown: choose one of "
                            f"{', '.join(facelib.DETECTORS)} with --detector")
    settings = Settings(**values).resolved()
    if settings.faces not in ("largest", "all"):
        raise PipelineError(f"crop setting faces={settings.faces!r} is not 'largest' or 'all'")
    return settings, source


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
                 frames: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise PipelineError(f"--batch-size must be at least 1, got {batch_size}")
        self.model = model
        self.metadata = metadata
        self.model_path = Path(model_path) if model_path else None
        self.settings, self.settings_source = settings_from_metadata(
            metadata, detector, every, frames)
        self.threshold, self.threshold_source = resolve_threshold(metadata, threshold)
        rule = aggregate or metadata.get("aggregate") or DEFAULT_RULE
        aggregator(rule)
        self.rule = rule
        self.batch_size = batch_size
        self.model_lock = threading.Lock()
        self._local = threading.local()
        self.trained_detector = (self.settings_source.startswith("the model metadata")
                                 and _recorded_detector(metadata))

    @classmethod
    def load(cls, model_path: Path, **options: Any) -> Analyzer:
        """Load the model file once (checked against its metadata) and prepare the detector."""
        from .models import load_classifier

        model, meta = load_classifier(Path(model_path))
        analyzer = cls(model, meta, model_path=Path(model_path), **options)
        facelib.preflight(analyzer.settings.detector)
        return analyzer

    def detector(self) -> facelib.Detector:
        """This thread's face detector, built on first use."""
        det = getattr(self._local, "detector", None)
        if det is None:
            det = facelib.build_detector(self.settings.detector, self.settings.min_confidence)
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
            "path": str(self.model_path) if self.model_path else None,
            "name": self.model_path.name if self.model_path else None,
            "backbone": meta.get("backbone"), "input_size": meta.get("input_size"),
            "class_names": meta.get("class_names"), "created": meta.get("created"),
            "val_auc": meta.get("val_auc"),
            "threshold": self.threshold, "threshold_source": self.threshold_source,
            "aggregate": self.rule, "batch_size": self.batch_size,
            "detector": self.settings.detector, "trained_with_detector": self.trained_detector,
            "crop": {"detector": self.settings.detector, **self.settings.record()},
            "crop_source": self.settings_source,
            "crop_from_metadata": isinstance(meta.get("crop"), dict),
            "metadata": meta,
        }

    def analyze(self, path: Path, progress: Progress | None = None,
                on_crop: CropSink | None = None, keep_crops: bool = False) -> Analysis:
        """Judge one video; raises VideoError when it cannot be decoded at all.

        ``progress(stage, done, total)`` is called as frames are read and crops scored;
        ``on_crop(index, rgb, jpeg)`` receives each crop as the model saw it and its JPEG bytes.
        """
        start = time.perf_counter()
        path = Path(path)
        cap, info = open_video(path)
        cap.release()
        s = self.settings
        expected = _expected_samples(info.reported_frames, s.every, s.frames)
        timing = {"decode_s": 0.0, "decode_wait_s": 0.0, "detect_s": 0.0, "crop_s": 0.0,
                  "classify_s": 0.0}
        faces: list[dict[str, Any]] = []
        frames: list[dict[str, Any]] = []
        scores: list[float] = []
        kept: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        batch: list[tuple[int, np.ndarray]] = []
        det_batch = facelib.DETECTORS[s.detector].batch_size

        def classify() -> None:
            t0 = time.perf_counter()
            with self.model_lock:
                scores.extend(float(v) for v in score_crops(self.model, pending, self.batch_size))
            timing["classify_s"] += time.perf_counter() - t0
            pending.clear()

        def detect() -> None:
            t0 = time.perf_counter()
            found = facelib.detect_downscaled(self.detector(), [f for _, f in batch],
                                              s.detect_max_side)
            t1 = time.perf_counter()
            timing["detect_s"] += t1 - t0
            for (index, frame), per_frame in zip(batch, found, strict=True):
                chosen = facelib.select_faces(per_frame, s.faces)
                frames.append({"frame": index, "time_s": _seconds(index, info.fps),
                               "faces": len(chosen), "score": None})
                for face_no, face in enumerate(chosen):
                    jpeg = facelib.encode_crop(facelib.crop_face(frame, face.box, s.margin,
                                                                 s.size))
                    rgb = decode_jpeg(jpeg)
                    k = len(faces)
                    faces.append({"index": k, "frame": index, "face": face_no,
                                  "time_s": _seconds(index, info.fps),
                                  "box": [round(v, 1) for v in face.box],
                                  "face_size": round(face.size, 1),
                                  "confidence": round(face.confidence, 4)})
                    if on_crop is not None:
                        on_crop(k, rgb, jpeg)
                    if keep_crops:
                        kept.append(rgb)
                    pending.append(rgb)
            timing["crop_s"] += time.perf_counter() - t1
            batch.clear()
            if len(pending) >= self.batch_size:
                classify()

        sampled = _prefetch(iter_sampled_frames(path, s.every, s.frames, info),
                            _prefetch_depth(info, det_batch), timing)
        for index, frame in sampled:
            batch.append((index, frame))
            if len(batch) >= det_batch:
                detect()
                _report(progress, "frames", len(frames), max(expected, len(frames)))
        if batch:
            detect()
        if pending:
            classify()
        _report(progress, "frames", len(frames), len(frames))
        for face, score in zip(faces, scores, strict=True):
            face["score"] = score
            face["call"] = "fake" if score >= self.threshold else "real"
        _frame_scores(frames, faces)
        timing["total_s"] = time.perf_counter() - start
        result = self._result(path, info, frames, faces, timing)
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
        if info.reported_frames and info.frames_read < info.reported_frames:
            warnings.append(f"the video ended early: the container announces "
                            f"{info.reported_frames} frames but {info.frames_read} could be "
                            "decoded (truncated or damaged file); judged on what was read")
        if not self.settings_source.startswith("the model metadata"):
            warnings.append("crop settings are preprocess defaults, not the model's own")
        if self.trained_detector and self.trained_detector != s.detector:
            warnings.append(f"faces found by {s.detector} but the model was trained on "
                            f"{self.trained_detector} crops")
        result: dict[str, Any] = {
            "video": video, "threshold": self.threshold,
            "threshold_source": self.threshold_source, "aggregate": self.rule,
            "settings": {"detector": s.detector, **s.record()},
            "settings_source": self.settings_source, "model": _model_summary(self),
            "frames": frames, "faces": faces,
            "timing": {k: round(v, 4) for k, v in timing.items()},
        }
        if not faces:
            if video["frames_sampled"] == 0:
                raise VideoError("no frame could be decoded (corrupt or truncated file)")
            result.update(verdict=VERDICT_NO_FACE, score=None, margin=None, borderline=None,
                          agreement=None,
                          message=f"no face with confidence >= {s.min_confidence} in "
                                  f"{video['frames_sampled']} sampled frames")
        else:
            vid_scores = [f["score"] for f in faces]
            score = aggregate_videos(["video"] * len(faces), vid_scores, self.rule)["video"]
            fake = score >= self.threshold
            margin = score - self.threshold
            same = sum(1 for f in faces if (f["call"] == "fake") == fake)
            result.update(verdict=VERDICT_FAKE if fake else VERDICT_REAL, score=score,
                          margin=margin, borderline=abs(margin) < BORDERLINE,
                          agreement=same / len(faces),
                          message=_explain(score, self.threshold, margin, same, len(faces)))
            if len(faces) < 3:
                warnings.append(f"judged on {len(faces)} face crop(s) only")
        result["warnings"] = warnings
        return result


def _recorded_detector(meta: dict[str, Any]) -> str | None:
    crop = meta.get("crop")
    if not isinstance(crop, dict):
        return None
    inner = crop.get("settings") if isinstance(crop.get("settings"), dict) else {}
    return crop.get("detector") or inner.get("detector")


def _model_summary(analyzer: Analyzer) -> dict[str, Any]:
    meta = analyzer.metadata
    return {"name": analyzer.model_path.name if analyzer.model_path else None,
            "backbone": meta.get("backbone"), "input_size": meta.get("input_size"),
            "created": meta.get("created")}


def _explain(score: float, threshold: float, margin: float, same: int, total: int) -> str:
    side = "above" if margin >= 0 else "below"
    how = "borderline: treat with caution" if abs(margin) < BORDERLINE else "clear"
    return (f"P(fake) {score:.3f} is {abs(margin):.3f} {side} the threshold {threshold:.3f} "
            f"({how}); {same} of {total} face crops agree")


def _seconds(index: int, fps: float) -> float | None:
    return round(index / fps, 3) if fps > 0 else None


def _expected_samples(reported: int, every: int | None, frames: int | None) -> int:
    if reported <= 0:
        return 0
    if frames:
        return min(frames, reported)
    step = every or 1
    return (reported + step - 1) // step


def _prefetch(frames: Iterator[tuple[int, np.ndarray]], depth: int,
              timing: dict[str, float]) -> Iterator[tuple[int, np.ndarray]]:
    """The frames of ``frames``, decoded ahead in a thread (OpenCV releases the GIL), so
    decoding overlaps detection and classification; at most ``depth`` frames wait.

    ``timing['decode_s']`` gets the decoder's busy time, ``timing['decode_wait_s']`` the part
    of it the caller waited for (not hidden behind detection); an error while decoding is
    raised here, in the caller's thread. Stopping early (an error downstream) stops the decoder.
    """
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    break
                finally:
                    timing["decode_s"] += time.perf_counter() - t0
                put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            put(exc)
            return
        finally:
            frames.close()  # type: ignore[attr-defined]
        put(_END)

    thread = threading.Thread(target=produce, name="dfpipe-decode", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = pending.get()
            timing["decode_wait_s"] = timing.get("decode_wait_s", 0.0) + time.perf_counter() - t0
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _prefetch_depth(info: Any, batch: int) -> int:
    """Enough frames to feed one detector batch, within PREFETCH_BYTES of RGB frames."""
    frame_bytes = max(1, info.width * info.height * 3)
    return int(max(2, min(max(2, batch), PREFETCH_BYTES // frame_bytes)))


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _frame_scores(frames: list[dict[str, Any]], faces: list[dict[str, Any]]) -> None:
    """A frame's score is its most fake-looking face (the one the chart shows)."""
    best: dict[int, float] = {}
    for face in faces:
        best[face["frame"]] = max(best.get(face["frame"], 0.0), face["score"])
    for frame in frames:
        frame["score"] = best.get(frame["frame"])


# -- batches of videos (app.py predict) -------------------------------------------------------

def find_videos(inputs: Sequence[Path]) -> list[Path]:
    """Video files named directly or found (recursively) in the folders given, in order."""
    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*")
                                if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS))
        elif item.is_file():
            found.append(item)
        else:
            raise PipelineError(f"not found: {item} (give video files or folders of videos)")
    if not found:
        raise PipelineError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) in "
                            f"{', '.join(str(p) for p in inputs)}")
    return found


def video_row(path: Path, result: dict[str, Any] | None, error: str = "") -> dict[str, Any]:
    """One CSV row per video: verdict, score, counts and stage timings."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS, "")
    row["path"] = str(path)
    if result is None:
        row.update(status="error", verdict="ERROR", message=error)
        return row
    video, timing = result["video"], result["timing"]
    row.update(status="ok" if result["faces"] else "no_face", verdict=result["verdict"],
               score=result["score"], threshold=result["threshold"], margin=result["margin"],
               borderline=result["borderline"], aggregate=result["aggregate"],
               seconds=timing["total_s"], decode_s=timing["decode_s"],
               detect_s=timing["detect_s"] + timing.get("crop_s", 0.0),
               classify_s=timing["classify_s"], message=result["message"])
    row.update({k: video[k] for k in ("faces", "frames_sampled", "frames_with_face",
                                      "frames_read", "fps", "duration_s", "width", "height")})
    return {k: ("" if v is None else v) for k, v in row.items()}


def predict_videos(analyzer: Analyzer, videos: Sequence[Path],
                   out: Path | None = None) -> list[dict[str, Any]]:
    """Judge each video; a video that cannot be read becomes an ``error`` row, not a crash.

    Writes ``out`` (.csv: one row per video; .json: the rows and each full result) atomically.
    """
    if out is not None:
        _check_out(Path(out))
    rows, full = [], []
    for path in tqdm(videos, desc="judging", unit="video", dynamic_ncols=True):
        try:
            result = analyzer.analyze(path).result
            rows.append(video_row(path, result))
            full.append({"path": str(path), "result": result})
        except VideoError as exc:
            rows.append(video_row(path, None, str(exc)))
            full.append({"path": str(path), "error": str(exc)})
    if out is not None:
        write_rows(Path(out), rows, full)
    return rows


def write_rows(out: Path, rows: list[dict[str, Any]], full: list[dict[str, Any]]) -> None:
    """Write the per-video table as CSV, or rows plus full results as JSON (by suffix)."""
    suffix = _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        if suffix == ".csv":
            writer = csv.DictWriter(fh, fieldnames=list(ROW_FIELDS))
            writer.writeheader()
            writer.writerows(rows)
        else:
            json.dump({"videos": rows, "results": full}, fh, indent=2)
    os.replace(tmp, out)


def _check_out(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise PipelineError(f"--out must end in .csv or .json, not {out.name}")
    return suffix

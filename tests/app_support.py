"""Helpers for the app's tests: a tiny saved detector whose score is set by its bias, videos
with and without a face, and a stand-in face detector for exact, fast checks."""

from __future__ import annotations

import io
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.labels import CLASS_NAMES
from dfpipe.extract import faces as facelib

TINY_SIZE = 64


def crop_metadata(detector: str = "mtcnn", every: int = 3, size: int = TINY_SIZE,
                  margin: float = 1.3) -> dict[str, Any]:
    """The ``crop`` block train.py writes (split report's preprocess settings)."""
    settings = {"detector": detector, "every": every, "frames": None, "margin": margin,
                "size": size, "detect_max_side": 640, "min_confidence": 0.9, "faces": "largest"}
    return {"margin": margin, "size": size, "detector": detector,
            "sampling": {"every": every, "frames": None, "faces": "largest"},
            "settings": settings}


def tiny_model(bias: float = 0.0, seed: int = 0) -> Any:
    """The real detector layout (resize, scaling, nested tiny backbone, dropout, sigmoid) with
    a small random head; ``bias`` moves every P(fake) up (positive) or down (negative)."""
    import keras

    from dfpipe.models.build import build_classifier
    from dfpipe.models.registry import OUTPUT_NAME, get_backbone

    keras.utils.set_random_seed(seed)
    model = build_classifier(get_backbone("tiny"), TINY_SIZE, None, 0.2)
    head = model.get_layer(OUTPUT_NAME)
    kernel = np.random.default_rng(seed).normal(0, 0.5, head.kernel.shape).astype("float32")
    head.set_weights([kernel, np.full(head.bias.shape, bias, "float32")])
    return model


def save_tiny_model(path: Path, bias: float = 0.0, threshold: float = 0.5,
                    crop: dict[str, Any] | None = None, seed: int = 0,
                    **extra: Any) -> Path:
    from dfpipe.models.saving import save_model

    meta = {"class_names": list(CLASS_NAMES), "input_size": TINY_SIZE, "backbone": "tiny",
            "threshold": threshold, "threshold_source": "set by the test", "crop": crop,
            "created": "2026-01-01T00:00:00+00:00", **extra}
    save_model(tiny_model(bias, seed), Path(path), meta)
    return Path(path)


def face_video(path: Path, n_frames: int = 9, size: tuple[int, int] = (160, 120),
               seed: int = 1) -> Path:
    """A short clip filming a real face photograph (MTCNN finds the face)."""
    from dfpipe.sample.camera import face_photos, write_face_video

    return write_face_video(Path(path), face_photos()[0][1], n_frames=n_frames, size=size,
                            seed=seed)


def blank_video(path: Path, n_frames: int = 9, size: tuple[int, int] = (160, 120)) -> Path:
    from dfpipe.sample.camera import write_blank_video

    return write_blank_video(Path(path), n_frames=n_frames, size=size)


class CentreDetector(facelib.Detector):
    """One face in the middle of each frame: exact, fast, for checking the orchestration."""

    name = "centre"

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence

    def detect(self, frames):
        return [[facelib.Face((f.shape[1] * .3, f.shape[0] * .25, f.shape[1] * .65,
                               f.shape[0] * .7), 0.99)] for f in frames]


CENTRE_SPEC = facelib.DetectorSpec(CentreDetector, {"min_confidence": 0.5}, batch_size=4)


def as_mjpg_avi(src: Path, dst: Path) -> Path:
    """Re-encode a video as Motion-JPEG AVI (a container that truncates less gracefully)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    ok, frame = cap.read()
    height, width = frame.shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    while ok:
        writer.write(frame)
        ok, frame = cap.read()
    writer.release()
    cap.release()
    return dst


def claiming_fps(src: Path, dst: Path, fps: float, repeat: int) -> Path:
    """The frames of ``src``, ``repeat`` times over, in an AVI whose header claims ``fps``."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for _ in range(repeat):
        for frame in frames:
            writer.write(frame)
    writer.release()
    return dst


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll until ``predicate()`` returns something truthy; bounded, fails with the last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    if not value:
        raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
    return value


def app_script():
    """The top-level app.py as a module (it is a script, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "app.py"
    spec = importlib.util.spec_from_file_location("dfpipe_app_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandInAnalyzer:
    """What the web app needs of an Analyzer: a verdict per video, one face when asked."""

    def __init__(self, faces: int = 1, steps: int = 0, step_s: float = 0.05) -> None:
        self.faces = faces
        self.steps = steps  # progress reports before the verdict, ``step_s`` apart
        self.step_s = step_s
        self.model = None
        self.model_lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": "stand-in.h5"}

    def warm_up(self) -> None:
        pass

    def analyze(self, path: Path, progress=None, save_crop=None, limits=None) -> Any:
        for step in range(self.steps):
            if progress is not None:
                progress("frames", step, self.steps)
            time.sleep(self.step_s)
        faces = []
        for index in range(self.faces):
            save_crop(index, None, b"\xff\xd8 a jpeg")
            faces.append({"index": index, "call": "fake", "score": 0.9})
        verdict = "FAKE" if faces else "NO FACE FOUND"
        result = {"video": {"name": path.name}, "timing": {}, "faces": faces,
                  "verdict": verdict, "score": 0.9 if faces else None, "message": verdict}
        return types.SimpleNamespace(result=result)


def run_job(app, video: Path, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Upload ``video`` through the API and poll until its job is done or failed."""
    client = app.test_client()
    data = {"video": (io.BytesIO(video.read_bytes()), "clip.mp4")}
    answer = client.post("/api/analyze", data=data, content_type="multipart/form-data",
                         headers=headers or {})
    assert answer.status_code == 202, answer.get_json()
    url = f"/api/jobs/{answer.get_json()['job_id']}"

    def finished() -> dict[str, Any] | None:
        job = client.get(url, headers=headers or {}).get_json()
        return job if job["status"] in ("done", "error") else None

    return wait_for(finished)

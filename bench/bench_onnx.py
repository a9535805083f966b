"""TF predict against ONNX Runtime for the detector: crops/s on the same crops, and process
start to ready-to-score, side by side in one run; the same for MTCNN (package vs numpy port).

An Xception detector at 299 px (random weights unless --model names a trained .h5; timings do
not depend on the weights) is exported to ONNX, then:
- throughput: the same real crops (../shared/data/dfdc_faces, 224 px, resized to 299 inside
  the model) scored through ``dfpipe.scoring.crops.score_crops`` by the Keras model and by the
  ONNX Runtime session, alternating rounds (one warm-up each, not counted); crops/s per round,
  the best and the median, and the largest score difference;
- start-up: a fresh Python process that imports the scoring code, loads the model with
  ``load_any`` and scores one crop, timed from launch to exit (wall clock), alternating .h5
  and .onnx runs.
- MTCNN: frames of ../shared/data/videos (--frames-per-video per clip, no larger than 640 px)
  through the mtcnn package and through the numpy port on ONNX Runtime, alternated: seconds per
  frame, faces found alike, largest box difference, and start-up of each in a fresh process.
The JSON records the machine, the load average before and after, and the ratios ONNX / TF.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_onnx.py > bench_onnx.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dfpipe.core.errors import PipelineError, run_cli  # noqa: E402
from dfpipe.core.labels import CLASS_NAMES  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "dfdc_faces"
VIDEOS = REPO.parent / "shared" / "data" / "videos"
DETECTOR_SCRIPT = """
import sys
import numpy as np
if sys.argv[1] == "onnx":
    from dfpipe.extract.mtcnn_onnx import OnnxMTCNN
    detector = OnnxMTCNN(sys.argv[2])
else:
    from dfpipe.extract.faces import MTCNNDetector
    detector = MTCNNDetector()
detector.detect([np.zeros((360, 640, 3), np.uint8)])
print("tensorflow" in sys.modules)
"""
READY_SCRIPT = """
import sys
import numpy as np
from dfpipe.models.onnxrun import load_any
from dfpipe.scoring.crops import score_crops
model, meta = load_any(sys.argv[1])
score_crops(model, [np.full((224, 224, 3), 128, np.uint8)])
print("tensorflow" in sys.modules)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=None,
                   help="trained .h5 (default: Xception at 299 px, random weights)")
    p.add_argument("--faces", type=Path, default=FACES, help="folder of crops with labels.csv")
    p.add_argument("--crops", type=int, default=32, help="crops scored per round")
    p.add_argument("--batch", type=int, default=32, help="score_crops batch size")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per runtime")
    p.add_argument("--starts", type=int, default=3, help="timed process starts per runtime")
    p.add_argument("--videos", type=Path, default=VIDEOS,
                   help="clips for the MTCNN comparison (package vs ONNX); absent: skipped")
    p.add_argument("--frames-per-video", type=int, default=3,
                   help="frames per clip for the MTCNN comparison (0: skip it)")
    return p.parse_args(argv)


def build_model(folder: Path) -> Path:
    """A real Xception detector (299 px, random weights) saved with its metadata."""
    from dfpipe.models.build import build_classifier
    from dfpipe.models.registry import get_backbone
    from dfpipe.models.saving import save_model

    spec = get_backbone("xception")
    model = build_classifier(spec, spec.input_size, None, spec.training.dropout)
    meta = {"class_names": list(CLASS_NAMES), "input_size": spec.input_size,
            "backbone": spec.name, "threshold": 0.5, "threshold_source": "benchmark (random)",
            "crop": None}
    path = folder / "xception_random.h5"
    save_model(model, path, meta)
    return path


def read_crops(folder: Path, count: int) -> list[Any]:
    import cv2

    labels = folder / "labels.csv"
    if not labels.is_file():
        raise PipelineError(f"no {labels}: give --faces a folder of crops with labels.csv")
    rows = labels.read_text(encoding="utf-8").splitlines()[1:count + 1]
    return [cv2.cvtColor(cv2.imread(str(folder / r.split(",")[0])), cv2.COLOR_BGR2RGB)
            for r in rows]


def throughput(models: dict[str, Any], crops: list[Any], batch: int, rounds: int
               ) -> dict[str, Any]:
    """Alternating timed rounds of score_crops per runtime, after one warm-up each."""
    from dfpipe.scoring.crops import score_crops

    scores = {name: score_crops(model, crops, batch_size=batch) for name, model in models.items()}
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            score_crops(model, crops, batch_size=batch)
            per_round[name].append(len(crops) / (time.perf_counter() - t0))
    out: dict[str, Any] = {
        name: {"crops_per_s_rounds": [round(v, 2) for v in values],
               "crops_per_s_best": round(max(values), 2),
               "crops_per_s_median": round(statistics.median(values), 2)}
        for name, values in per_round.items()}
    diff = abs(scores["onnx"] - scores["tf"]).max()
    out["max_abs_score_difference"] = float(f"{diff:.3g}")
    return out


def start_times(commands: dict[str, list[str]], starts: int) -> dict[str, Any]:
    """Launch-to-exit wall seconds of each command (a fresh process getting ready to score or
    detect, then doing it once), alternated."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    times: dict[str, list[float]] = {name: [] for name in commands}
    imported: dict[str, bool] = {}
    for _ in range(starts):
        for name, command in commands.items():
            t0 = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", *command], cwd=REPO,
                                 env=env, capture_output=True, text=True, timeout=600)
            times[name].append(time.perf_counter() - t0)
            if run.returncode != 0:
                raise PipelineError(f"{name} start failed: {run.stderr.strip().splitlines()[-1]}")
            imported[name] = run.stdout.strip().splitlines()[-1] == "True"
    return {name: {"seconds": [round(v, 2) for v in values],
                   "median_s": round(statistics.median(values), 2),
                   "imports_tensorflow": imported[name]}
            for name, values in times.items()}


def video_frames(folder: Path, per_video: int, max_side: int = 640) -> list[Any]:
    """``per_video`` frames spread over each clip, RGB, no larger than ``max_side`` (read as
    preprocess reads them)."""
    from dfpipe.core.images import fit_within
    from dfpipe.extract.video import iter_sampled_frames

    return [fit_within(frame, max_side) for video in sorted(folder.glob("**/*.mp4"))
            for _, frame in iter_sampled_frames(video, frames=per_video)]


def detector_comparison(folder: Path, frames: list[Any], starts: int) -> dict[str, Any]:
    """The mtcnn package against the numpy port on ONNX Runtime: seconds per frame (frames
    alternated), the same faces found, the largest box difference, and start-up."""
    import numpy as np

    from dfpipe.extract.faces import MTCNNDetector
    from dfpipe.extract.mtcnn_onnx import OnnxMTCNN

    detectors = {"tf": MTCNNDetector(min_confidence=0.0),
                 "onnx": OnnxMTCNN(folder, min_confidence=0.0)}
    for detector in detectors.values():
        detector.detect(frames[:1])
    seconds: dict[str, list[float]] = {name: [] for name in detectors}
    same, worst, faces = 0, 0.0, 0
    for frame in frames:
        found = {}
        for name, detector in detectors.items():
            t0 = time.perf_counter()
            found[name] = detector.detect([frame])[0]
            seconds[name].append(time.perf_counter() - t0)
        a = sorted(f.box for f in found["onnx"])
        b = sorted(f.box for f in found["tf"])
        faces += len(b)
        if len(a) == len(b):
            same += 1
            if a:
                worst = max(worst, float(np.abs(np.subtract(a, b)).max()))
    out: dict[str, Any] = {
        name: {"median_s_per_frame": round(statistics.median(v), 3),
               "frames_per_s": round(len(v) / sum(v), 2)} for name, v in seconds.items()}
    out.update({"frames": len(frames), "faces_by_package": faces,
                "frames_with_same_face_count": same, "max_box_difference_px": worst,
                "speed_ratio_onnx_over_tf": round(sum(seconds["tf"]) / sum(seconds["onnx"]), 2)})
    out["start_to_ready"] = start_times({"tf": [DETECTOR_SCRIPT, "tf"],
                                         "onnx": [DETECTOR_SCRIPT, "onnx", str(folder)]}, starts)
    return out


def machine() -> dict[str, Any]:
    import onnxruntime
    import tensorflow as tf

    cpu = ""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "cpu_count": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__}


def load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    crops = read_crops(args.faces, args.crops)
    from dfpipe.models.export import export_model
    from dfpipe.models.onnxrun import load_any

    with tempfile.TemporaryDirectory() as tmp:
        h5 = args.model or build_model(Path(tmp))
        onnx_path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        export_model(h5, "onnx", onnx_path)
        export_s = time.perf_counter() - t0
        models = {"tf": load_any(h5)[0], "onnx": load_any(onnx_path)[0]}
        speed = throughput(models, crops, args.batch, args.rounds)
        starts = start_times({"tf": [READY_SCRIPT, str(h5)],
                              "onnx": [READY_SCRIPT, str(onnx_path)]}, args.starts)
        detection = None
        frames = video_frames(args.videos, args.frames_per_video) if (
            args.frames_per_video > 0 and args.videos.is_dir()) else []
        if frames:
            from dfpipe.extract.mtcnn_export import export_mtcnn

            detection = detector_comparison(export_mtcnn(Path(tmp) / "mtcnn"), frames,
                                            args.starts)
    result = {
        "benchmark": "TF predict vs ONNX Runtime: crops/s and process start to ready-to-score",
        "machine": {**machine(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "conditions": {"model": str(args.model) if args.model else "xception 299 random",
                       "crops": len(crops), "crop_size": list(crops[0].shape),
                       "batch": args.batch, "rounds": args.rounds, "starts": args.starts,
                       "threads": "library defaults (all usable cores)",
                       "export_s": round(export_s, 1)},
        "throughput": speed,
        "start_to_ready": starts,
        "mtcnn": detection,
        "ratios": {
            "onnx_over_tf_crops_per_s_median": round(
                speed["onnx"]["crops_per_s_median"] / speed["tf"]["crops_per_s_median"], 2),
            "tf_over_onnx_start_s_median": round(
                starts["tf"]["median_s"] / starts["onnx"]["median_s"], 2)},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

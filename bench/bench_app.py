"""The app, timed from upload to verdict on real clips, and its classifier against bare predict.

Each clip of --videos is uploaded to the app (Flask test client, the same app waitress serves)
and the job is polled until its verdict is stored: that wall time is "upload to verdict",
reported per clip and per second of video, with the app's own split into decode (decoder
busy time; it runs ahead in its own thread, and decode_wait_s is the part not hidden), detect
(face detection and cropping) and classify, and the CPU time the process spent (contention
from other programs inflates wall time, not CPU time). Grad-CAM heatmaps, drawn after the
verdict, are timed apart. The classifier is then compared on the very crops the app scored
(read back from its job folder): its throughput inside the app (crops / classify seconds)
against ``model.predict`` on the same crops, and against ``scoring.score_crops`` alone.

The model is a real Xception detector at 299 px built with random weights (no ImageNet
weights offline), unless --model names a trained one: timings do not depend on the weights.
One clip is analysed first as a warm-up (graph building) and not counted.

Example (from the repo root; about 10 minutes on 2 cores)::

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_app.py > bench_app.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
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

THROUGHPUT_TARGET = 0.8
VERDICT_TARGET_S = 5.0
TARGET_CLIP_S = (9.0, 11.0)
POLL_S = 0.01
JOB_TIMEOUT_S = 600.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "data" / "videos",
                   help="folder searched recursively for clips")
    p.add_argument("--model", type=Path, default=None,
                   help="trained model (default: Xception at 299 px, random weights)")
    p.add_argument("--detector", default="mtcnn", help="face detector for the built model")
    p.add_argument("--every", type=int, default=15, help="sampling of the built model's crops")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU cores to use: TensorFlow and OpenCV threads and CPU affinity")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips")
    p.add_argument("--no-gradcam", action="store_true", help="skip timing the heatmaps")
    p.add_argument("--runtime", choices=("tf", "onnx"), default="tf",
                   help="tf: the .h5 and the mtcnn package; onnx: the model and MTCNN exported "
                        "to ONNX (written here first) and judged without TensorFlow's "
                        "predict (no heatmaps)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed repeats of the bare classifier per clip (best is kept)")
    return p.parse_args(argv)


def pin_threads(threads: int) -> list[int]:
    """Use ``threads`` cores: affinity where the machine has more, and matching pools."""
    import cv2
    import tensorflow as tf

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores and len(cores) > threads:
        os.sched_setaffinity(0, cores[:threads])
        cores = cores[:threads]
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(threads)
    return cores


def build_model(folder: Path, detector: str, every: int) -> Path:
    """A real Xception detector (299 px, random weights) saved with crop metadata."""
    from dfpipe.models.build import build_classifier
    from dfpipe.models.registry import get_backbone
    from dfpipe.models.saving import save_model

    spec = get_backbone("xception")
    model = build_classifier(spec, spec.input_size, None, spec.training.dropout)
    settings = {"detector": detector, "every": every, "frames": None, "margin": 1.3,
                "size": spec.input_size, "detect_max_side": 640, "min_confidence": 0.9,
                "faces": "largest"}
    meta = {"class_names": list(CLASS_NAMES), "input_size": spec.input_size,
            "backbone": spec.name, "threshold": 0.5, "threshold_source": "benchmark (random)",
            "crop": {"margin": 1.3, "size": spec.input_size, "detector": detector,
                     "sampling": {"every": every, "frames": None, "faces": "largest"},
                     "settings": settings}}
    path = folder / "xception_random.h5"
    save_model(model, path, meta)
    return path


def upload_and_wait(client: Any, path: Path) -> dict[str, Any]:
    """Upload one clip; seconds until the verdict is stored and until the job is done."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    response = client.post("/api/analyze", content_type="multipart/form-data",
                           data={"video": (io.BytesIO(path.read_bytes()), path.name)})
    if response.status_code != 202:
        raise PipelineError(f"{path.name}: upload refused: {response.get_json()}")
    job_id = response.get_json()["job_id"]
    verdict_s = verdict_cpu_s = None
    deadline = start + JOB_TIMEOUT_S
    while time.perf_counter() < deadline:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if verdict_s is None and (job["verdict"] or job["status"] == "error"):
            verdict_s = time.perf_counter() - start
            verdict_cpu_s = time.process_time() - cpu_start
        if job["status"] in ("done", "error"):
            break
        time.sleep(POLL_S)
    else:
        raise PipelineError(f"{path.name}: no result after {JOB_TIMEOUT_S:.0f} s")
    if job["status"] == "done":  # polls carry the verdict; the full result has its own URL
        job["result"] = client.get(job["result_url"]).get_json()["result"]
    return {"job": job, "upload_to_verdict_s": verdict_s, "verdict_cpu_s": verdict_cpu_s,
            "upload_to_done_s": time.perf_counter() - start}


def clip_row(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    job = run["job"]
    if job["status"] != "done":
        return {"clip": path.name, "status": job["status"], "message": job["message"]}
    res = job["result"]
    video, timing = res["video"], res["timing"]
    duration = video["duration_s"] or 0.0
    verdict_s = run["upload_to_verdict_s"]
    return {
        "clip": str(path.relative_to(path.parents[1])), "status": "ok",
        "width": video["width"], "height": video["height"], "duration_s": duration,
        "frames_sampled": video["frames_sampled"], "faces": video["faces"],
        "verdict": res["verdict"],
        "upload_to_verdict_s": round(verdict_s, 3),
        "verdict_cpu_s": round(run["verdict_cpu_s"], 3),
        "verdict_s_per_video_second": round(verdict_s / duration, 3) if duration else None,
        "decode_s": timing["decode_s"], "decode_wait_s": timing.get("decode_wait_s"),
        "detect_s": round(timing["detect_s"] + timing["crop_s"], 4),
        "classify_s": timing["classify_s"], "analysis_s": timing["total_s"],
        "queue_s": timing.get("queue_s"),
        "heatmaps_s": (res.get("heatmaps") or {}).get("seconds"),
        "upload_to_done_s": round(run["upload_to_done_s"], 3),
    }


def classifier_comparison(model: Any, crops_by_clip: list[list[Any]], app_seconds: float,
                          batch_size: int, repeats: int) -> dict[str, Any]:
    """The app's classify time vs model.predict and score_crops on the same crops."""
    import numpy as np

    from dfpipe.scoring.crops import score_crops

    n = sum(len(c) for c in crops_by_clip)
    bare = scoring = 0.0
    max_diff = 0.0
    from dfpipe.models.onnxrun import is_onnx_model

    quiet = {} if is_onnx_model(model) else {"verbose": 0}  # ONNX Runtime prints nothing
    for crops in crops_by_clip:
        if not crops:
            continue
        x = np.stack(crops).astype(np.float32)
        best_bare = best_scoring = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            ref = model.predict(x, batch_size=batch_size, **quiet).reshape(-1)
            best_bare = min(best_bare, time.perf_counter() - t0)
            t0 = time.perf_counter()
            mine = score_crops(model, crops, batch_size)
            best_scoring = min(best_scoring, time.perf_counter() - t0)
        bare += best_bare
        scoring += best_scoring
        max_diff = max(max_diff, float(np.max(np.abs(ref - mine))))
    app_rate = n / app_seconds if app_seconds else None
    bare_rate = n / bare if bare else None
    return {
        "crops": n, "batch_size": batch_size,
        "app_classify_s": round(app_seconds, 3), "bare_predict_s": round(bare, 3),
        "score_crops_s": round(scoring, 3),
        "app_crops_per_s": round(app_rate, 2) if app_rate else None,
        "bare_predict_crops_per_s": round(bare_rate, 2) if bare_rate else None,
        "app_vs_bare": round(app_rate / bare_rate, 3) if app_rate and bare_rate else None,
        "target": THROUGHPUT_TARGET,
        "max_abs_score_difference": max_diff,
        "note": f"bare model.predict: best of {repeats} runs per clip after warm-up; the app's "
                "time is its single pass during the upload-to-verdict runs",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    clips = sorted(p for p in args.videos.rglob("*.mp4")) if args.videos.is_dir() else []
    if not clips:
        raise PipelineError(f"no clips under {args.videos}")
    clips = clips[:args.limit] if args.limit else clips
    cores = pin_threads(args.threads)

    from dfpipe.core.images import read_rgb
    from dfpipe.serve.analyzer import Analyzer
    from dfpipe.serve.web import create_app

    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        tmp_path = Path(tmp)
        model_path = args.model or build_model(tmp_path, args.detector, args.every)
        options: dict[str, Any] = {}
        if args.runtime == "onnx":
            from dfpipe.extract.mtcnn_export import export_mtcnn
            from dfpipe.models.export import export_model

            export_model(Path(model_path), "onnx")
            options = {"runtime": "onnx", "mtcnn_onnx": export_mtcnn(tmp_path / "mtcnn_onnx")}
        t0 = time.perf_counter()
        analyzer = Analyzer.load(model_path, **options)
        load_s = time.perf_counter() - t0
        gradcam = not args.no_gradcam and args.runtime == "tf"
        app = create_app({"instance": tmp_path / "instance", "gradcam": gradcam,
                          "queue_size": len(clips) + 1}, analyzer)
        client = app.test_client()
        try:
            t0 = time.perf_counter()
            upload_and_wait(client, clips[0])
            warmup_s = time.perf_counter() - t0
            rows, crops_by_clip, app_classify = [], [], 0.0
            for path in clips:
                run = upload_and_wait(client, path)
                rows.append(clip_row(path, run))
                job = run["job"]
                if job["status"] == "done":
                    folder = app.extensions["dfpipe"].runner.job_dir(job["id"])
                    crops_by_clip.append([read_rgb(folder / f"face_{f['index']:04d}.jpg")
                                          for f in job["result"]["faces"]])
                    app_classify += job["result"]["timing"]["classify_s"]
                print(json.dumps(rows[-1]), file=sys.stderr)
            classifier = classifier_comparison(analyzer.model, crops_by_clip, app_classify,
                                               analyzer.batch_size, args.repeats)
        finally:
            app.extensions["dfpipe"].shutdown()

    ok = [r for r in rows if r["status"] == "ok"]
    ten = [r for r in ok if TARGET_CLIP_S[0] <= r["duration_s"] <= TARGET_CLIP_S[1]]
    total_video = sum(r["duration_s"] for r in ok)
    total_verdict = sum(r["upload_to_verdict_s"] for r in ok)
    split = {k: round(sum(r[k] or 0.0 for r in ok), 3)
             for k in ("decode_s", "decode_wait_s", "detect_s", "classify_s")}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "app upload-to-verdict and classifier throughput",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "cores_used": cores,
                    "threads": args.threads,
                    "load_average_1_5_15": [round(v, 2) for v in load] if load else None},
        "runtime": args.runtime,
        "model": {"path": str(args.model) if args.model else "Xception 299 px, random weights",
                  "load_s": round(load_s, 3), "detector": analyzer.settings.detector,
                  "every": analyzer.settings.every, "crop_size": analyzer.settings.size},
        "warmup_clip_s": round(warmup_s, 3),
        "clips": rows,
        "totals": {"clips": len(ok), "video_s": round(total_video, 2),
                   "upload_to_verdict_s": round(total_verdict, 3),
                   "verdict_s_per_video_second": round(total_verdict / total_video, 3)
                   if total_video else None,
                   "split_s": split,
                   "heatmaps_s": round(sum(r["heatmaps_s"] or 0 for r in ok), 3)},
        "ten_second_clips": {
            "count": len(ten),
            "median_upload_to_verdict_s": round(statistics.median(
                r["upload_to_verdict_s"] for r in ten), 3) if ten else None,
            "max_upload_to_verdict_s": max((r["upload_to_verdict_s"] for r in ten),
                                           default=None),
            "target_s": VERDICT_TARGET_S,
            "target_met": all(r["upload_to_verdict_s"] < VERDICT_TARGET_S for r in ten)
            if ten else None,
            "median_cpu_s": round(statistics.median(r["verdict_cpu_s"] for r in ten), 3)
            if ten else None,
            "note": "verdict_cpu_s is the process's CPU time from upload to verdict; divided "
                    "by the cores used it bounds the wall time on otherwise idle cores"},
        "classifier": classifier,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

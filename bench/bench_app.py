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

Several configurations (``--configs``: runtime, inference precision, face detector) are loaded
at once and every clip is uploaded to each in turn, so they meet the same machine load; the
JSON gives each one's figures, the 720p clips against issue 22's 3.0 s target, and the ratios
against the first configuration.

Example (from the repo root; about 15 minutes on 2 cores for the three default configs)::

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_app.py --no-gradcam > bench_app.json
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

from dfpipe.core.cpu import cpu_supports_bf16  # noqa: E402
from dfpipe.core.errors import PipelineError, run_cli  # noqa: E402
from dfpipe.core.labels import CLASS_NAMES  # noqa: E402

THROUGHPUT_TARGET = 0.8
VERDICT_TARGET_S = 5.0
TARGET_CLIP_S = (9.0, 11.0)
TARGET_720P_S = 3.0
CLIP_720P_S = (9.0, 14.0)
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
    p.add_argument("--configs", default="tf:float32:package,tf:bfloat16:onnx,onnx:float32:onnx",
                   help="comma-separated runtime:precision:faces to time side by side: "
                        "runtime tf (the .h5) or onnx (the model exported here first, no "
                        "heatmaps), precision float32/bfloat16/auto (app --precision), faces "
                        "package (the mtcnn package) or onnx (MTCNN's exported networks, "
                        "app --mtcnn-onnx); ratios are against the first")
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


def parse_config(text: str) -> dict[str, str]:
    """``runtime:precision:faces``, e.g. ``tf:bfloat16:onnx`` (faces: the mtcnn package or
    MTCNN's exported networks)."""
    parts = text.strip().split(":")
    if (len(parts) != 3 or parts[0] not in ("tf", "onnx")
            or parts[1] not in ("float32", "bfloat16", "auto")
            or parts[2] not in ("package", "onnx") or parts[0] == "onnx" and parts[2] != "onnx"):
        raise PipelineError(f"--configs {text!r}: write runtime:precision:faces with runtime tf "
                            "or onnx, precision float32/bfloat16/auto, faces package or onnx "
                            "(the onnx runtime always uses onnx faces)")
    return {"name": text.strip(), "runtime": parts[0], "precision": parts[1], "faces": parts[2]}


def start_app(config: dict[str, str], model_path: Path, tmp_path: Path, mtcnn: Path | None,
              args: argparse.Namespace, queue: int) -> dict[str, Any]:
    """One configuration's Analyzer and app, loaded and warmed up on the first clip."""
    from dfpipe.serve.analyzer import Analyzer
    from dfpipe.serve.web import create_app

    options: dict[str, Any] = {"runtime": config["runtime"], "precision": config["precision"]}
    if config["faces"] == "onnx":
        options["mtcnn_onnx"] = mtcnn
    t0 = time.perf_counter()
    analyzer = Analyzer.load(model_path, **options)
    load_s = time.perf_counter() - t0
    gradcam = not args.no_gradcam and config["runtime"] == "tf"
    folder = tmp_path / config["name"].replace(":", "-")
    app = create_app({"instance": folder / "instance", "gradcam": gradcam, "queue_size": queue},
                     analyzer)
    return {"config": config, "analyzer": analyzer, "app": app, "client": app.test_client(),
            "load_s": load_s, "rows": [], "crops": [], "classify_s": 0.0}


def upload_clip(state: dict[str, Any], path: Path, read_rgb: Any) -> None:
    run = upload_and_wait(state["client"], path)
    state["rows"].append(clip_row(path, run))
    job = run["job"]
    if job["status"] == "done":
        folder = state["app"].extensions["dfpipe"].runner.job_dir(job["id"])
        state["crops"].append([read_rgb(folder / f"face_{f['index']:04d}.jpg")
                               for f in job["result"]["faces"]])
        state["classify_s"] += job["result"]["timing"]["classify_s"]
    print(json.dumps({"config": state["config"]["name"], **state["rows"][-1]}), file=sys.stderr)


def clip_group(rows: list[dict[str, Any]], keep: Any, target_s: float,
               note: str) -> dict[str, Any]:
    """Median and max upload-to-verdict over the clips ``keep`` selects, against a target."""
    chosen = [r for r in rows if keep(r)]
    times = [r["upload_to_verdict_s"] for r in chosen]
    return {
        "clips": [r["clip"] for r in chosen], "count": len(chosen),
        "median_upload_to_verdict_s": round(statistics.median(times), 3) if times else None,
        "max_upload_to_verdict_s": max(times, default=None),
        "median_crops": statistics.median(r["faces"] for r in chosen) if chosen else None,
        "target_s": target_s,
        "median_meets_target": statistics.median(times) <= target_s if times else None,
        "median_cpu_s": round(statistics.median(r["verdict_cpu_s"] for r in chosen), 3)
        if chosen else None, "note": note}


def is_ten_seconds(row: dict[str, Any]) -> bool:
    return TARGET_CLIP_S[0] <= row["duration_s"] <= TARGET_CLIP_S[1]


def is_720p(row: dict[str, Any]) -> bool:
    """A 720p clip (1280x720, either way up) of about 10 s: 9 to 14 s, 20-odd sampled frames."""
    sides = sorted((row["width"], row["height"]))
    return sides == [720, 1280] and CLIP_720P_S[0] <= row["duration_s"] <= CLIP_720P_S[1]


def config_report(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ok = [r for r in state["rows"] if r["status"] == "ok"]
    total_video = sum(r["duration_s"] for r in ok)
    total_verdict = sum(r["upload_to_verdict_s"] for r in ok)
    analyzer = state["analyzer"]
    described = analyzer.describe()
    return {
        "config": state["config"],
        "model_load_s": round(state["load_s"], 3), "warmup_clip_s": round(state["warmup_s"], 3),
        "precision": described["precision"],
        "face_detector_runtime": described["face_detector_runtime"],
        "clips": state["rows"],
        "totals": {"clips": len(ok), "video_s": round(total_video, 2),
                   "upload_to_verdict_s": round(total_verdict, 3),
                   "verdict_s_per_video_second": round(total_verdict / total_video, 3)
                   if total_video else None,
                   "split_s": {k: round(sum(r[k] or 0.0 for r in ok), 3)
                               for k in ("decode_s", "decode_wait_s", "detect_s", "classify_s")},
                   "heatmaps_s": round(sum(r["heatmaps_s"] or 0 for r in ok), 3)},
        "clips_720p": clip_group(ok, is_720p, TARGET_720P_S,
                                 "issue 22's target: a 10 s 720p clip judged in <= 3.0 s"),
        "ten_second_clips": clip_group(ok, is_ten_seconds, VERDICT_TARGET_S,
                                       "9-11 s clips of any size (here 1080p DFDC clips)"),
        "classifier": classifier_comparison(analyzer.model, state["crops"],
                                            state["classify_s"], analyzer.batch_size,
                                            args.repeats),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    clips = sorted(p for p in args.videos.rglob("*.mp4")) if args.videos.is_dir() else []
    if not clips:
        raise PipelineError(f"no clips under {args.videos}")
    clips = clips[:args.limit] if args.limit else clips
    configs = [parse_config(c) for c in args.configs.split(",") if c.strip()]
    cores = pin_threads(args.threads)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    from dfpipe.core.images import read_rgb

    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        tmp_path = Path(tmp)
        model_path = args.model or build_model(tmp_path, args.detector, args.every)
        mtcnn = None
        if any(c["faces"] == "onnx" for c in configs):
            from dfpipe.extract.mtcnn_export import export_mtcnn

            mtcnn = export_mtcnn(tmp_path / "mtcnn_onnx")
        if any(c["runtime"] == "onnx" for c in configs):
            from dfpipe.models.export import export_model

            export_model(Path(model_path), "onnx")
        states = [start_app(c, Path(model_path), tmp_path, mtcnn, args, len(clips) + 1)
                  for c in configs]
        try:
            for state in states:
                t0 = time.perf_counter()
                upload_and_wait(state["client"], clips[0])
                state["warmup_s"] = time.perf_counter() - t0
            for i, path in enumerate(clips):  # interleaved: each clip under every config in turn
                order = states if i % 2 == 0 else states[::-1]
                for state in order:
                    upload_clip(state, path, read_rgb)
            reports = [config_report(state, args) for state in states]
        finally:
            for state in states:
                state["app"].extensions["dfpipe"].shutdown()

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    base = reports[0]["clips_720p"]["median_upload_to_verdict_s"]
    report = {
        "benchmark": "app upload-to-verdict and classifier throughput",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "cores_used": cores, "threads": args.threads,
                    "cpu_bf16": cpu_supports_bf16(),
                    "load_average_1_5_15_start": [round(v, 2) for v in load_start]
                    if load_start else None,
                    "load_average_1_5_15_end": [round(v, 2) for v in load] if load else None},
        "model": {"path": str(args.model) if args.model else "Xception 299 px, random weights",
                  "detector": args.detector, "every": args.every},
        "order": "each clip is uploaded under every configuration in turn (the order reversed "
                 "every other clip), after one warm-up clip per configuration",
        "configs": reports,
        "ratios_720p_median_vs_first_config": {
            r["config"]["name"]: round(base / r["clips_720p"]["median_upload_to_verdict_s"], 3)
            if base and r["clips_720p"]["median_upload_to_verdict_s"] else None
            for r in reports},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

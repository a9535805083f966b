"""Preprocess stage against the plain loop most deepfake projects use, on the same videos.

The plain loop: one process reads every frame (decode and colour conversion), runs MTCNN on
the full-resolution frame for every Nth one, keeps the largest face, crops it with the same
margin and writes the JPEG. This stage: ``dfpipe.extract.run.run`` with the same detector,
sampling and margin, ``--workers`` processes. Both run in this one invocation, each into a
fresh temporary folder, and one JSON object goes to stdout: wall time, videos/s, sampled
frames/s, the speed ratio (plain loop time / this stage's time) and how many of the plain
loop's faces this stage also found (same frame, box IoU >= 0.5). By default each is timed as
a whole process from launch to exit, imports and detector build included: the plain loop as a
child Python process, this stage as ``preprocess.py`` (``--in-process``: library calls).

Example (from the repo root; 2-3 minutes on 2 idle cores, far longer on a shared machine)::

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python bench/bench_preprocess.py > bench_preprocess.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from dfpipe.core.errors import PipelineError, run_cli  # noqa: E402
from dfpipe.core.manifest import read_manifests  # noqa: E402
from dfpipe.extract import faces as facelib  # noqa: E402
from dfpipe.extract.run import Settings, VideoJob, discover, run  # noqa: E402
from dfpipe.extract.video import DEFAULT_EVERY  # noqa: E402

SPEED_TARGET = 8.0  # issue 22
AGREEMENT_TARGET = 0.95
IOU_MATCH = 0.5
DETECTOR = "mtcnn"
PLAIN_RESULT = "plain_loop.json"

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children: the work done, whatever the load."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages where the OS has them: how shared the machine was."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def plain_loop(jobs: list[VideoJob], out_root: Path, every: int, margin: float, size: int,
               min_confidence: float) -> tuple[dict[str, Any], dict[tuple[str, int], Box]]:
    """The popular loop, timed per phase; returns its figures and its face box per frame."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start, cpu_start = time.perf_counter(), cpu_seconds()
    from mtcnn import MTCNN

    detector = MTCNN()
    phase = {"decode": 0.0, "detect": 0.0, "crop_write": 0.0}
    boxes: dict[tuple[str, int], Box] = {}
    per_video: dict[str, float] = {}
    frames_read = frames_sampled = 0
    ready = time.perf_counter()
    for job in tqdm(jobs, unit="video", desc="plain loop", file=sys.stderr):
        out_dir = out_root / job.label / job.video_id
        out_dir.mkdir(parents=True, exist_ok=True)
        video_start = time.perf_counter()
        cap = cv2.VideoCapture(job.source)
        index = 0
        while True:
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                phase["decode"] += time.perf_counter() - t0
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            phase["decode"] += t1 - t0
            if index % every == 0:
                frames_sampled += 1
                found = [f for f in detector.detect_faces(rgb)
                         if float(f["confidence"]) >= min_confidence]
                t2 = time.perf_counter()
                phase["detect"] += t2 - t1
                if found:
                    x, y, w, h = (float(v) for v in max(found, key=lambda f: f["box"][2] *
                                                        f["box"][3])["box"])
                    box = (x, y, x + w, y + h)
                    boxes[(job.video_id, index)] = box
                    crop = facelib.crop_face(rgb, box, margin, size)
                    cv2.imwrite(str(out_dir / f"{index:06d}_00.jpg"),
                                cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, facelib.JPEG_QUALITY])
                phase["crop_write"] += time.perf_counter() - t2
            index += 1
        cap.release()
        frames_read += index
        per_video[job.video_id] = round(time.perf_counter() - video_start, 2)
    seconds = time.perf_counter() - start
    figures = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds() - cpu_start, 2),
               "detector_build_seconds": round(ready - start, 2),
               "phase_seconds": {k: round(v, 2) for k, v in phase.items()},
               "frames_read": frames_read, "frames_sampled": frames_sampled,
               "faces": len(boxes), "video_seconds": per_video}
    return figures, boxes


def this_stage(videos: Path, out_root: Path, settings: Settings, workers: int,
               limit: int | None, mtcnn_onnx: Path | None = None
               ) -> tuple[dict[str, Any], dict[tuple[str, int], Box]]:
    """``extract.run`` as the preprocess script calls it; boxes from its manifest."""
    start, cpu_start = time.perf_counter(), cpu_seconds()
    summary = run(videos, out_root, settings, workers=workers, limit=limit,
                  mtcnn_onnx=mtcnn_onnx)
    seconds = time.perf_counter() - start
    records = read_manifests(out_root)
    boxes = {(rec["video_id"], crop["frame"]): tuple(crop["box"])
             for rec in records for crop in rec["crops"] if crop["face"] == 0}
    figures = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds() - cpu_start, 2),
               "video_seconds_sum": round(sum(rec["seconds"] for rec in records), 2),
               "frames_read": sum(rec["frames_read"] for rec in records),
               "frames_sampled": summary.frames_sampled, "faces": len(boxes),
               "statuses": dict(summary.statuses),
               "video_seconds": {rec["video_id"]: rec["seconds"] for rec in records}}
    return figures, boxes


def timed_process(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` from launch to exit: wall seconds and the CPU seconds it (and its children)
    used; PipelineError with its last output lines when it fails."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PipelineError(f"{shlex.join(cmd[:3])}... exited {done.returncode}: {tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"process_seconds": round(seconds, 2), "process_cpu_seconds": round(cpu, 2),
            "command": shlex.join(cmd)}


def plain_loop_process(videos: Path, out_root: Path, every: int, limit: int | None
                       ) -> tuple[dict[str, Any], dict[tuple[str, int], Box]]:
    """The plain loop as its own Python process (imports and MTCNN build included)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain-loop-into", str(out_root),
           "--videos", str(videos), "--every", str(every)]
    if limit:
        cmd += ["--limit", str(limit)]
    timing = timed_process(cmd)
    saved = json.loads((out_root / PLAIN_RESULT).read_text(encoding="utf-8"))
    boxes = {(video, int(frame)): tuple(box) for video, frame, box in saved["boxes"]}
    figures = {**saved["figures"], **timing, "seconds": timing["process_seconds"],
               "cpu_seconds": timing["process_cpu_seconds"]}
    return figures, boxes


def stage_process(videos: Path, out_root: Path, settings: Settings, workers: int,
                  limit: int | None, mtcnn_onnx: Path | None
                  ) -> tuple[dict[str, Any], dict[tuple[str, int], Box]]:
    """``preprocess.py`` as a user runs it, one process from launch to exit."""
    cmd = [sys.executable, str(REPO / "preprocess.py"), "--input", str(videos), "--output",
           str(out_root), "--detector", settings.detector, "--every", str(settings.every),
           "--detect-max-side", str(settings.detect_max_side), "--workers", str(workers)]
    if limit:
        cmd += ["--limit", str(limit)]
    if mtcnn_onnx:
        cmd += ["--mtcnn-onnx", str(mtcnn_onnx)]
    timing = timed_process(cmd)
    records = read_manifests(out_root)
    boxes = {(rec["video_id"], crop["frame"]): tuple(crop["box"])
             for rec in records for crop in rec["crops"] if crop["face"] == 0}
    figures = {**timing, "seconds": timing["process_seconds"],
               "cpu_seconds": timing["process_cpu_seconds"],
               "video_seconds_sum": round(sum(rec["seconds"] for rec in records), 2),
               "frames_read": sum(rec["frames_read"] for rec in records),
               "frames_sampled": sum(rec["frames_sampled"] for rec in records),
               "faces": len(boxes),
               "video_seconds": {rec["video_id"]: rec["seconds"] for rec in records}}
    return figures, boxes


def agreement(plain: dict[tuple[str, int], Box], ours: dict[tuple[str, int], Box]
              ) -> dict[str, Any]:
    """How many of the plain loop's faces this stage found at the same frame (IoU >= 0.5)."""
    ious = [iou(box, ours[key]) for key, box in plain.items() if key in ours]
    matched = sum(v >= IOU_MATCH for v in ious)
    missed = Counter(video for (video, frame), box in plain.items()
                     if (video, frame) not in ours or iou(box, ours[video, frame]) < IOU_MATCH)
    return {
        "plain_faces": len(plain),
        "matched": matched,
        "fraction": round(matched / len(plain), 4) if plain else None,
        "missed_no_face": sum(key not in ours for key in plain),
        "missed_other_box": sum(v < IOU_MATCH for v in ious),
        "mean_iou_when_both_found": round(sum(ious) / len(ious), 4) if ious else None,
        "extra_faces_only_ours": sum(key not in plain for key in ours),
        "missed_by_video": dict(sorted(missed.items())),
    }


def _rates(figures: dict[str, Any], n_videos: int) -> None:
    seconds = figures["seconds"]
    figures["videos_per_s"] = round(n_videos / seconds, 4) if seconds else None
    figures["sampled_frames_per_s"] = round(figures["frames_sampled"] / seconds, 3) \
        if seconds else None


def benchmark(videos: Path, workers: int, every: int, limit: int | None,
              detect_max_side: int, mtcnn_onnx: Path | None = None,
              whole_process: bool = True) -> dict[str, Any]:
    """Both methods on the same videos, one after the other; the whole JSON report.

    ``whole_process``: each runs as its own process, timed from launch to exit (the plain loop
    as a script, the stage as ``preprocess.py``); otherwise both run inside this one."""
    settings = Settings(detector=DETECTOR, every=every, detect_max_side=detect_max_side)
    resolved = settings.resolved()
    jobs = discover(videos)
    if limit:
        jobs = jobs[:limit]
    for job in jobs:  # same page-cache state for both methods
        Path(job.source).read_bytes()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        if whole_process:
            plain, plain_boxes = plain_loop_process(videos, Path(tmp) / "plain", every, limit)
            ours, our_boxes = stage_process(videos, Path(tmp) / "ours", settings, workers,
                                            limit, mtcnn_onnx)
        else:
            plain, plain_boxes = plain_loop(jobs, Path(tmp) / "plain", every, resolved.margin,
                                            resolved.size, resolved.min_confidence)
            ours, our_boxes = this_stage(videos, Path(tmp) / "ours", settings, workers, limit,
                                         mtcnn_onnx)
    load_after = load_average()
    for figures in (plain, ours):
        _rates(figures, len(jobs))
    ratio = plain["seconds"] / ours["seconds"] if ours["seconds"] else None
    agree = agreement(plain_boxes, our_boxes)
    return {
        "benchmark": "preprocess",
        "command": shlex.join(["python", *sys.argv]),
        "videos": str(videos.resolve()), "n_videos": len(jobs),
        "settings": {"detector": DETECTOR, "workers": workers, **resolved.record(),
                     "iou_match": IOU_MATCH},
        "plain_loop": {"what": "1 process, cap.read() + BGR->RGB on every frame, "
                               "MTCNN().detect_faces on every Nth full-resolution frame, "
                               "largest face, same crop_face, cv2.imwrite", **plain},
        "timed_as": "whole processes, launch to exit (wall clock)" if whole_process
        else "library calls inside this process",
        "this_stage": {"what": "preprocess.py" if whole_process else
                       f"dfpipe.extract.run.run(workers={workers}, "
                       f"mtcnn_onnx={str(mtcnn_onnx) if mtcnn_onnx else None})",
                       **ours},
        "speed_ratio": round(ratio, 3) if ratio else None,
        "cpu_ratio": round(plain["cpu_seconds"] / ours["cpu_seconds"], 3)
        if ours["cpu_seconds"] else None,
        "agreement": agree,
        "targets": {"speed_ratio_min": SPEED_TARGET, "agreement_min": AGREEMENT_TARGET,
                    "speed_met": bool(ratio and ratio >= SPEED_TARGET),
                    "agreement_met": bool(agree["fraction"] is not None
                                          and agree["fraction"] >= AGREEMENT_TARGET)},
        "machine": {"cpu_count": os.cpu_count(),
                    "cpus_usable": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else None,
                    "loadavg_before": load_before, "loadavg_after": load_after,
                    "python": platform.python_version(), "opencv": cv2.__version__},
    }


def write_plain_loop(videos: Path, out_root: Path, every: int, limit: int | None) -> None:
    """The plain loop's child process: run it, then write its figures and boxes."""
    resolved = Settings(detector=DETECTOR, every=every).resolved()
    jobs = discover(videos)
    figures, boxes = plain_loop(jobs[:limit] if limit else jobs, out_root, every,
                                resolved.margin, resolved.size, resolved.min_confidence)
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / PLAIN_RESULT).write_text(json.dumps({
        "figures": figures, "boxes": [[v, f, list(b)] for (v, f), b in boxes.items()]}),
        encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "data" / "videos",
                        help="dataset root with real/ and fake/ sub-folders of videos")
    parser.add_argument("--workers", type=int, default=2, help="processes for this stage")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY,
                        help="sample every Nth frame (both methods)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N videos (in discovery order)")
    parser.add_argument("--detect-max-side", type=int, default=facelib.DEFAULT_DETECT_MAX_SIDE,
                        help="this stage detects on frames downscaled to this longest side")
    parser.add_argument("--mtcnn-onnx", type=Path, default=None, metavar="DIR",
                        help="this stage runs MTCNN from its ONNX export in DIR (python "
                             "export.py --detector mtcnn --output DIR); None: the package")
    parser.add_argument("--in-process", action="store_true",
                        help="time both as library calls inside this process instead of as "
                             "whole processes from launch to exit")
    parser.add_argument("--plain-loop-into", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_loop_into:
        write_plain_loop(args.videos, args.plain_loop_into, args.every, args.limit)
        return
    if args.workers < 1 or args.every < 1:
        raise PipelineError("--workers and --every must be >= 1")
    if not args.videos.is_dir():
        raise PipelineError(f"videos folder not found: {args.videos}: pass --videos DIR "
                            "(a folder with real/ and fake/ sub-folders of videos)")
    print(json.dumps(benchmark(args.videos, args.workers, args.every, args.limit,
                               args.detect_max_side, args.mtcnn_onnx,
                               whole_process=not args.in_process), indent=2))


if __name__ == "__main__":
    run_cli(main)

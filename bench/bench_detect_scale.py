#!/usr/bin/env python
"""Detect small, cut big: how small a copy the face detector can be given, printed as JSON.

On frames of the shared real clips (every --every-th frame), the detector runs once on the
full frame (the baseline) and then on copies no larger than each --sides value, with and
without the full-size retry on frames where the copy shows no face. For each side: ms per
frame and the share of the full-size detector's faces found again (IoU >= 0.5), side by side
in one run, with the ratio to the full-size time.

Reproduce: python bench/bench_detect_scale.py --detector mtcnn --sides 320,400,480,640
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfpipe.extract import faces as facelib
from dfpipe.extract.video import iter_sampled_frames

VIDEOS = REPO.parent / "shared" / "data" / "videos"


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def timed(detector, frames, side, retry, batch):
    found, start = [], time.perf_counter()
    for i in range(0, len(frames), batch):
        found += facelib.detect_downscaled(detector, frames[i:i + batch], side, retry)
    return found, (time.perf_counter() - start) * 1000 / len(frames)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--videos", type=Path, default=VIDEOS, help="folder of clips (any depth)")
    p.add_argument("--detector", default="mtcnn", choices=list(facelib.DETECTORS))
    p.add_argument("--sides", default="320,400,480,640",
                   help="comma-separated largest sides of the detection copy")
    p.add_argument("--every", type=int, default=15, help="take every Nth frame of each clip")
    p.add_argument("--min-confidence", type=float, default=0.9,
                   help="faces below this confidence are ignored on both sides")
    p.add_argument("--batch", type=int, default=8, help="frames per detector call")
    args = p.parse_args()
    clips = sorted(v for v in args.videos.rglob("*.mp4"))
    frames = [f for clip in clips for _, f in iter_sampled_frames(clip, every=args.every)]
    detector = facelib.build_detector(args.detector)
    facelib.detect_downscaled(detector, frames[:2], None)  # warm-up: graph building
    keep = [[f for f in faces if f.confidence >= args.min_confidence] for faces in
            timed(detector, frames, None, False, args.batch)[0]]
    full, full_ms = timed(detector, frames, None, False, args.batch)
    reference = [[f for f in faces if f.confidence >= args.min_confidence] for faces in full]
    total = sum(len(r) for r in reference)
    rows = []
    for side in [int(s) for s in args.sides.split(",")]:
        for retry in (False, True):
            found, ms = timed(detector, frames, side, retry, args.batch)
            hit = sum(any(iou(r.box, f.box) >= 0.5 for f in faces
                          if f.confidence >= args.min_confidence)
                      for ref, faces in zip(reference, found, strict=True) for r in ref)
            rows.append({"max_side": side, "retry_full_size": retry, "ms_per_frame": round(ms, 1),
                         "speedup_vs_full": round(full_ms / ms, 2),
                         "faces_found_share": round(hit / total, 4) if total else None})
    sizes = sorted({f.shape[:2] for f in frames})
    print(json.dumps({
        "command": "python bench/bench_detect_scale.py " + " ".join(sys.argv[1:]),
        "conditions": {"clips": len(clips), "frames": len(frames), "frame_sizes": sizes,
                       "detector": args.detector, "faces_full_size": total,
                       "stable_baseline": keep == reference,
                       "min_confidence": args.min_confidence, "batch": args.batch},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg": os.getloadavg(), "cv2_threads": cv2.getNumThreads()},
        "full_size": {"ms_per_frame": round(full_ms, 1)},
        "downscaled": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

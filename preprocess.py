"""Stage 1: sample frames of labelled videos, detect faces, save square crops + a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from dfpipe.core.errors import add_debug_option, run_cli
from dfpipe.extract.faces import DEFAULT_DETECT_MAX_SIDE, DEFAULT_MARGIN, DEFAULT_SIZE, DETECTORS
from dfpipe.extract.presets import PRESETS, preset_values
from dfpipe.extract.run import Settings, parse_shard, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", type=Path, default=Path("dataset"),
                   help="dataset folder with real/ and fake/ (videos at any depth below them), "
                        "or a benchmark's root as it unpacks: FaceForensics++ (DFD included), "
                        "Celeb-DF v1/v2, DFDC parts with metadata.json, the DFDC preview")
    p.add_argument("--output", type=Path, default=Path("preprocessed"),
                   help="where crops and the manifest go")
    p.add_argument("--detector", choices=sorted(DETECTORS), default="retinaface",
                   help="face detector (mtcnn works offline; retinaface needs retinaface.h5)")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--every", type=int, default=None,
                        help="keep every Nth frame (None: 15, unless --frames or --preset)")
    sample.add_argument("--frames", type=int, default=None,
                        help="keep K evenly spaced frames instead of every Nth")
    p.add_argument("--detect-max-side", type=int, default=DEFAULT_DETECT_MAX_SIDE,
                   help="detect on a copy no larger than this (pixels); 0 = full size")
    p.add_argument("--mtcnn-onnx", type=Path, default=None, metavar="DIR",
                   help="run MTCNN from its ONNX export in DIR (python export.py --detector "
                        "mtcnn writes models/mtcnn_onnx): the same faces, faster, without "
                        "TensorFlow; None: the mtcnn package")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="detector confidence threshold (default: the detector's own, 0.9)")
    p.add_argument("--faces", choices=["largest", "all"], default="largest",
                   help="keep the largest face per frame, or all faces")
    p.add_argument("--margin", type=float, default=None,
                   help="square crop side = margin x face size (None: the preset's, else "
                        f"{DEFAULT_MARGIN}, the FaceForensics++ convention)")
    p.add_argument("--size", type=int, default=None,
                   help=f"crop side in pixels (None: the preset's, else {DEFAULT_SIZE})")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="published protocol settings in one flag, recorded in the manifest: "
                        "dfb = DeepfakeBench (32 evenly spaced frames, margin 1.3, 256 px); "
                        "sbi = Self-Blended Images (32 frames, margin 1.25, 380 px); an option "
                        "that contradicts the preset is refused")
    p.add_argument("--labels", type=Path, default=None,
                   help="CSV path,label[,group] (paths relative to --input); "
                        "default: INPUT/labels.csv when present")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--shard", default=None,
                   help="K/N: take the K-th of N deterministic shares (K from 0), "
                        "e.g. $SLURM_ARRAY_TASK_ID/4")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every video of this share instead of resuming")
    p.add_argument("--retry-errors", action="store_true",
                   help="when resuming, redo videos whose record says error")
    p.add_argument("--limit", type=int, default=None, help="process only the first N videos")
    p.add_argument("--max-frames", type=int, default=None,
                   help="decode at most N frames per video (a longer one is cut there and its "
                        "record says so); None: no cap. Only MP4/MOV, Matroska/WebM, AVI and "
                        "MPEG-TS files are opened; any other file is recorded as an error")
    add_debug_option(p)
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    chosen = preset_values(args.preset, {"every": args.every, "frames": args.frames,
                                         "margin": args.margin, "size": args.size})
    settings = Settings(detector=args.detector, **chosen,
                        detect_max_side=args.detect_max_side,
                        min_confidence=args.min_confidence, faces=args.faces)
    summary = run(args.input, args.output, settings, workers=args.workers,
                  shard=parse_shard(args.shard), overwrite=args.overwrite,
                  retry_errors=args.retry_errors, labels_csv=args.labels, limit=args.limit,
                  max_frames=args.max_frames, mtcnn_onnx=args.mtcnn_onnx)
    done = sum(summary.statuses.values())
    rate = summary.frames_sampled / summary.seconds if summary.seconds else 0.0
    print(f"videos: {summary.total} in share, {summary.skipped} already done, {done} processed "
          f"(ok {summary.statuses['ok']}, no face {summary.statuses['no_face']}, "
          f"error {summary.statuses['error']})")
    print(f"faces saved: {summary.faces_saved}; sampled frames: {summary.frames_sampled} "
          f"({rate:.1f} frames/s over {summary.seconds:.1f} s); output: {args.output}")
    for line in summary.errors[:20]:
        print(f"  {line}")
    if len(summary.errors) > 20:
        print(f"  ... and {len(summary.errors) - 20} more (see the manifest)")
    print(f"fakes with no known source (each its own group, a leak risk): "
          f"{summary.ungrouped_fakes}" + ("" if not summary.ungrouped_fakes else
          " - give their source with --labels (path,label,group), or split.py will refuse "
          "them unless --allow-ungrouped-fakes"))
    return 0


if __name__ == "__main__":
    run_cli(main)

"""Stage 2: quality-filter face crops and split them into train/val/test by identity group.

    python split.py --input preprocessed --output preprocessed_split

Every video involving the same person (a real video, the fakes made from it, the fakes that
show its face) lands in one split, as far as the evidence shows: a labels CSV, DFDC
metadata, FaceForensics++ and Celeb-DF names. Fakes with no known source are refused
unless --allow-ungrouped-fakes.

A folder of already-cropped faces with a labels CSV (path,label[,group]) is split the same way:

    python split.py --input faces --labels faces/labels.csv --output faces_split
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dfpipe.core.errors import PipelineError, add_debug_option, run_cli
from dfpipe.split import folder_input as cropfolder
from dfpipe.split import grouping, quality
from dfpipe.split import run as splits
from dfpipe.split.assign import DEFAULT_RATIOS, DEFAULT_SEED, UNLISTED_CHOICES
from dfpipe.split.write import report_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", type=Path, default=Path("preprocessed"),
                   help="preprocess.py output folder (crops + manifest*.jsonl), or a folder "
                        "of face crops with a labels CSV (see --labels)")
    p.add_argument("--output", type=Path, default=Path("preprocessed_split"),
                   help="folder to create with train/val/test, split.csv and the report")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--ratios", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                     default=list(DEFAULT_RATIOS),
                     help="shares of train, val and test (scaled to sum to 1), met per class "
                          "in crops and videos while keeping each group whole")
    how.add_argument("--protocol", type=Path, default=None,
                     help="official split instead of ratios: a folder with FaceForensics++ "
                          "train.json/val.json/test.json, a CSV with columns group,split, or a "
                          "dataset's own test list (Celeb-DF List_of_testing_videos.txt, DFDC "
                          "preview dataset.json, DFDC metadata.json) or the root holding it: "
                          "its test videos form the test set exactly, the rest is split into "
                          "train/val by group (Celeb-DF: by target identity)")
    p.add_argument("--group-by", choices=grouping.GROUP_BY, default="identity",
                   help="identity: a video joins every identity it involves (a fake its target "
                        "and its source); target: a fake joins its target identity only (for "
                        "Celeb-DF-style names, where sources chain every person into one "
                        "group); the report counts the source identities that cross splits")
    p.add_argument("--unlisted", choices=UNLISTED_CHOICES, default="error",
                   help="with --protocol: what to do with groups the protocol does not list "
                        "(error: refuse; drop: leave them out, counted in the report)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the group assignment; same input and seed give the same split")
    p.add_argument("--min-face", type=float, default=quality.MIN_FACE,
                   help="drop crops whose face was smaller than this many pixels in the "
                        "original frame (before resizing)")
    p.add_argument("--min-sharpness", type=float, default=quality.MIN_SHARPNESS,
                   help="drop crops whose variance of the Laplacian (blur measure) is lower")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="drop crops whose detector confidence is lower (None: the value "
                        f"preprocess used, from the manifest; {quality.MIN_CONFIDENCE} if it "
                        "does not say)")
    p.add_argument("--max-per-video", type=int, default=None,
                   help="keep at most this many crops per video, spread evenly over time "
                        "(None keeps them all)")
    p.add_argument("--labels", type=Path, default=None,
                   help="CSV path,label[,group]. For a preprocess.py output: paths as in the "
                        "manifest's relpath (relative to the dataset root), its group column "
                        "(several ids joined by |, e.g. 519|515) adds identities to the groups. "
                        "For a crops folder (no manifest): paths relative to --input, optional "
                        "columns video, frame, face_width, face_height, confidence; None: "
                        "--input/labels.csv when --input has no manifest")
    p.add_argument("--crop-is-video", action="store_true",
                   help="crops folder whose labels CSV has no video column and whose crops "
                        "lie in no per-video folder: take each crop as a video of its own "
                        "(only right when no two crops come from one video; default: off, "
                        "such a folder is refused; with per-video folders each crop's "
                        "parent folder is its video)")
    p.add_argument("--group-column", default=None,
                   help="crops folder: the column naming each crop's source group; None: the "
                        f"first of {', '.join(cropfolder.GROUP_COLUMNS)} present, else each "
                        "video is its own group")
    p.add_argument("--allow-ungrouped-fakes", action="store_true",
                   help="split even when some fakes have no known source (each is then its "
                        "own group, and the face it shows may sit in another split)")
    p.add_argument("--margin", type=float, default=None,
                   help="crop margin the crops were made with, recorded for the model when "
                        "the manifest does not say (None: the manifest's, else unknown)")
    p.add_argument("--size", type=int, default=None,
                   help="crop side in pixels, recorded when the manifest does not say")
    p.add_argument("--detector", default=None,
                   help="face detector the crops were made with, recorded when the manifest "
                        "does not say")
    p.add_argument("--copy", action="store_true",
                   help="copy the crops instead of hard-linking them (links are used when "
                        "possible, copies otherwise)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output if it already exists")
    p.add_argument("--workers", type=int, default=quality.default_workers(),
                   help="threads reading crops to measure sharpness")
    add_debug_option(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_per_video is not None and args.max_per_video < 1:
        raise PipelineError("--max-per-video must be at least 1 (leave it out to keep all)")
    rules = quality.QualityRules(min_face=args.min_face, min_sharpness=args.min_sharpness,
                                 min_confidence=args.min_confidence,
                                 max_per_video=args.max_per_video)
    loader = cropfolder.loader_for(args.input, args.labels, args.group_column, args.margin,
                                   args.size, args.crop_is_video)
    report = splits.run_split(args.input, args.output, rules=rules, ratios=args.ratios,
                              seed=args.seed, protocol=args.protocol, unlisted=args.unlisted,
                              copy=args.copy, overwrite=args.overwrite, workers=args.workers,
                              labels=None if loader else args.labels, loader=loader,
                              allow_ungrouped_fakes=args.allow_ungrouped_fakes,
                              group_by=args.group_by,
                              crop={"margin": args.margin, "size": args.size,
                                    "detector": args.detector})
    print(report_text(report), end="")
    print(f"written to {args.output} ({report['link_mode']})")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""Stage 4: measure a trained detector on one split, per face crop and per video.

    python evaluate.py --model models/xception_best.h5 --data preprocessed_split --split test

Writes metrics.json, metrics_report.txt, predictions_crops.csv, predictions_videos.csv and
PNG figures to --output. Any folder laid out as <split>/{real,fake}/<video>/<image> can be
scored, so a second dataset gives cross-dataset results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dfpipe.core.errors import add_debug_option, run_cli
from dfpipe.evaluate import crossdata, metrics
from dfpipe.evaluate import run as evaluation
from dfpipe.models.onnxrun import RUNTIMES
from dfpipe.models.precision import add_precision_option
from dfpipe.scoring import crops as scoring


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/xception_best.h5"),
                   help="model written by train.py (its metadata gives the class order and "
                        "the threshold; training_log.csv beside it adds the training curves)")
    p.add_argument("--data", type=Path, action="append", default=None,
                   help="split.py output folder (videos come from its split.csv), any folder "
                        "laid out as <split>/{real,fake}/<video>/<image>, or a preprocess.py "
                        "output never split (its official test list is scored where the "
                        "dataset has one, else every video). Repeat it, or give a file "
                        "listing one folder per line, for the cross-dataset table "
                        "(cross_dataset.csv/.md/.png, one sub-folder per dataset). None: "
                        "preprocessed_split")
    p.add_argument("--split", default=evaluation.DEFAULT_SPLIT,
                   help="which split to score (train, val, test, or a folder name under --data)")
    p.add_argument("--aggregate", choices=list(scoring.AGGREGATORS), default=None,
                   help="how a video's crop scores become its score (confident: the DFDC "
                        "winner's rule, mean of the confident frames when there are enough); "
                        "None: the rule stored with the model (train.py --aggregate), mean "
                        "for models that store none")
    p.add_argument("--threshold", type=float, default=None,
                   help="P(fake) at or above which a video is called fake; None: the "
                        "video-level threshold stored with the model (chosen on validation "
                        "videos with its rule; older models: their crop-level one, with a "
                        "notice)")
    p.add_argument("--crop-threshold", type=float, default=None,
                   help="P(fake) at or above which a crop is called fake (frame metrics); "
                        "None: the crop-level threshold stored with the model")
    p.add_argument("--crops-per-video", type=int, default=None,
                   help="judge each video on this many of its crops, drawn evenly in time "
                        "(0: all); None: the K stored in the model's operating point (all for "
                        "models that store none)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="auto: by the model file (.h5 TensorFlow, .onnx ONNX Runtime, which "
                        "never imports TensorFlow); onnx: the export beside a .h5 (python "
                        "export.py --model M.h5); tf: the .h5")
    add_precision_option(p)
    p.add_argument("--tta", choices=scoring.TTA_MODES, default=None,
                   help="test-time augmentation: flip scores each crop as the mean of it and "
                        "its mirror image (twice the model calls); None: the model's operating "
                        "point's, else none")
    p.add_argument("--output", type=Path, default=evaluation.DEFAULT_OUTPUT,
                   help="folder for the figures, reports and prediction tables")
    p.add_argument("--batch-size", type=int, default=scoring.DEFAULT_BATCH_SIZE,
                   help="crops per model call")
    p.add_argument("--bootstrap", type=int, default=metrics.DEFAULT_RESAMPLES,
                   help="bootstrap resamples for the 95%% intervals of AUC and accuracy "
                        "(0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    add_debug_option(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datas = crossdata.expand_data(args.data or [Path("preprocessed_split")])
    options = {"split": args.split, "aggregate": args.aggregate, "threshold": args.threshold,
               "batch_size": args.batch_size, "bootstrap": args.bootstrap, "seed": args.seed,
               "crop_threshold": args.crop_threshold, "crops_per_video": args.crops_per_video,
               "tta": args.tta, "runtime": args.runtime, "precision": args.precision}
    if len(datas) > 1:
        for row in crossdata.evaluate_datasets(args.model, datas, args.output, **options):
            print(f"{row['dataset']} ({row['protocol']}): {row['videos']} videos, "
                  f"{row['failed']} failed, video AUC {row['video_auc']}")
        print(f"written to {args.output}: {crossdata.CROSS_CSV}, {crossdata.CROSS_MD}, "
              f"{crossdata.CROSS_PNG} and one folder per dataset")
        return 0
    result = evaluation.evaluate(args.model, datas[0], output=args.output, **options)
    thr = result["threshold"]
    crop = result["crop_threshold"]
    print(f"threshold {thr['value']:.4f} for videos ({result['aggregation']['rule']} rule) from "
          f"{thr['source']}; {crop['value']:.4f} for crops from {crop['source']}")
    for level in evaluation.LEVELS:
        lvl = result[level]
        m = lvl["metrics"]
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        print(f"{level}: {lvl['count']} ({lvl['real']} real, {lvl['fake']} fake)  "
              f"accuracy {m['accuracy']:.4f}  ROC-AUC {auc}")
    op = result["operating_point"]
    m = op["measured"]
    print(f"each video judged on {m['crops_per_video'] or 'all its'} crops: {m['crops_used']} "
          f"used of {m['crops_found']} found; at the threshold FPR {m['fpr']}, TPR {m['tpr']}")
    if op.get("warning"):
        print(f"note: {op['warning']}")
    undefined = sorted({k for level in evaluation.LEVELS for k in result[level]["undefined"]})
    if undefined:
        print(f"undefined on this data: {', '.join(undefined)} (reasons in the report)")
    print(f"videos scored: {result['data']['selection']['protocol']}")
    print(f"written to {args.output}: metrics_report.txt, metrics.json, per_method.csv, "
          f"{len(result['figures'])} figures")
    return 0


if __name__ == "__main__":
    run_cli(main)

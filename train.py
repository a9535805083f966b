#!/usr/bin/env python
"""Fine-tune a backbone (Xception by default) on a split folder and save a self-describing model.

Writes <output>/<backbone>_best.h5 with its metadata (also in <backbone>_best.json),
training_log.csv, training_curves.png and tensorboard/. A killed run (even SIGKILL) started
again with the same command continues from its last finished epoch (<output>/.resume/,
removed once the model is saved); --restart starts over.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dfpipe.core.errors import add_debug_option, run_cli  # noqa: E402
from dfpipe.models.registry import BACKBONES  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from dfpipe.models.registry import SCHEDULES
    from dfpipe.scoring.crops import AGGREGATORS, TTA_MODES
    from dfpipe.train.config import config_fields
    from dfpipe.train.devices import PRECISIONS
    from dfpipe.train.inputs import BALANCE_MODES

    d = config_fields()
    augment_defaults = ", ".join(f"{b.name} {b.training.augment:g}" for b in BACKBONES.values())
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=d["data"],
                   help="split folder written by split.py (train/ and val/ are read)")
    p.add_argument("--output", type=Path, default=d["output"], help="folder for model and logs")
    p.add_argument("--backbone", default=d["backbone"], choices=sorted(BACKBONES),
                   help="feature extractor; its input size, scaling and learning rates are "
                        "the defaults of the options left unset ('tiny': a small net for CPU-scale "
                        "training from scratch, 96 px, 20 epochs, and for tests)")
    p.add_argument("--weights", default=d["weights"],
                   help="backbone start: imagenet (downloads), none (random: no head phase, "
                        "all layers train) or PATH to a local .h5 of the backbone's weights")
    p.add_argument("--size", type=int, default=d["size"],
                   help="side the backbone sees (crops are resized inside the model); "
                        "unset: the backbone's (xception 299)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="images per device; the global batch is this times the replicas")
    p.add_argument("--head-epochs", type=int, default=d["head_epochs"],
                   help="phase 1: epochs training the new head with the backbone frozen; "
                        "unset: the backbone's (xception 2)")
    p.add_argument("--epochs", type=int, default=d["epochs"],
                   help="phase 2: most epochs training the top --unfreeze backbone layers "
                        "(early stopping may end sooner); with --weights none, all epochs; "
                        "unset: the backbone's (xception 10)")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help="phase 1 learning rate; unset: the backbone's (xception 1e-3)")
    p.add_argument("--fine-tune-lr", type=float, default=d["fine_tune_lr"],
                   help="phase 2 learning rate (the schedule's start); unset: the "
                        "backbone's (xception 2e-4)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                   help="AdamW's decoupled weight decay (each step shrinks weights by "
                        "lr x this; not on biases or batch norm); unset: the backbone's "
                        "(xception 1e-2)")
    p.add_argument("--schedule", default=d["schedule"], choices=SCHEDULES,
                   help="phase 2 learning rate: cosine decay to 0 over --epochs, or cut by "
                        "0.3 after --lr-patience epochs without a better val AUC; unset: the "
                        "backbone's (xception cosine)")
    p.add_argument("--dropout", type=float, default=d["dropout"],
                   help="dropout before the output; unset: the backbone's")
    p.add_argument("--unfreeze", type=int, default=d["unfreeze"],
                   help="top backbone layers trained in phase 2 (-1: all); unset: the "
                        "backbone's (xception -1)")
    p.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction,
                   default=d["freeze_bn"],
                   help="--freeze-bn keeps batch norm frozen in phase 2, --no-freeze-bn lets "
                        "it train when --batch-size (per replica) is 16 or more; unset: the "
                        "backbone's (EfficientNet frozen, Xception trains); from scratch it "
                        "always trains")
    p.add_argument("--frames-per-video", type=int, default=d["frames_per_video"],
                   help="each epoch draws at most this many crops per video, spread over "
                        "its timeline, redrawn every epoch; validation uses one fixed draw, "
                        "and the saved operating point judges every video (in evaluate and "
                        "the app too) on this many crops drawn evenly in time (0: every "
                        "crop, and then a rule's score depends on each video's count)")
    p.add_argument("--precision", default=d["precision"], choices=PRECISIONS,
                   help="auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with bf16, "
                        "else float32; the saved model is float32 either way")
    p.add_argument("--balance", default=d["balance"], choices=BALANCE_MODES,
                   help="class balance: loss weights, balanced sampling, or none")
    p.add_argument("--augment", default=d["augment"],
                   help="training augmentation strength: none, light (0.5), full (1, the "
                        "published recipe) or a number in [0, 1] that scales every "
                        "probability but the flip's and every range; unset: the backbone's "
                        f"({augment_defaults}); validation is never augmented")
    p.add_argument("--no-augment", action="store_true",
                   help="the same as --augment none")
    p.add_argument("--patience", type=int, default=d["patience"],
                   help="epochs without a better val AUC before stopping a phase")
    p.add_argument("--lr-patience", type=int, default=d["lr_patience"],
                   help="with --schedule plateau: epochs without a better val AUC before "
                        "cutting the learning rate")
    p.add_argument("--aggregate", default=d["aggregate"], choices=list(AGGREGATORS),
                   help="rule turning a video's crop scores into its score; validation crops "
                        "are aggregated per video with it and the video-level threshold is "
                        "chosen on those videos (evaluate and the app default to both)")
    p.add_argument("--tta", default=d["tta"], choices=list(TTA_MODES),
                   help="test-time augmentation the operating point is chosen with: flip "
                        "scores each validation crop as the mean of it and its mirror image, "
                        "and the model's operating point stores it, so evaluate and the app "
                        "judge with it too unless told otherwise")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed for every random choice")
    p.add_argument("--sbi", action="store_true",
                   help="self-blended training (Shiohara & Yamasaki 2022): every real training "
                        "crop also yields a fake blended from two altered copies of itself, "
                        "made on the fly and labelled fake; pairs share a batch (an odd "
                        "--batch-size is rounded down to pairs); keypoints come from the split "
                        "table, else MTCNN once (cached in landmarks.json beside the split or "
                        "in --output); validation data is unchanged unless --sbi-val")
    p.add_argument("--sbi-ratio", type=float, default=d["sbi_ratio"],
                   help="with --sbi: share of each epoch's fake examples that are self-blended; "
                        "1 uses no fake crop of the split (a split with only real training "
                        "crops works); R < 1 adds round(N_real*(1-R)/R) of the split's fake "
                        "crops per epoch (0.5: as many as there are real crops)")
    p.add_argument("--sbi-val", action="store_true",
                   help="with --sbi: validate on the validation reals and a self-blend of "
                        "each (seeded, made once) instead of the split's fakes, so neither "
                        "the checkpoint nor the thresholds see a real fake (default: off, "
                        "validation uses the split's real and fake videos)")
    p.add_argument("--restart", action="store_true",
                   help="discard an unfinished run's backup in --output and start over "
                        "(without it, the same command resumes that run)")
    add_debug_option(p)
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    from dfpipe.train.config import TrainConfig
    from dfpipe.train.loop import train

    config = TrainConfig(
        data=args.data, output=args.output, backbone=args.backbone, weights=args.weights,
        size=args.size, batch_size=args.batch_size, head_epochs=args.head_epochs,
        epochs=args.epochs, lr=args.lr, fine_tune_lr=args.fine_tune_lr, dropout=args.dropout,
        unfreeze=args.unfreeze, weight_decay=args.weight_decay, schedule=args.schedule,
        freeze_bn=args.freeze_bn, frames_per_video=args.frames_per_video,
        precision=args.precision, balance=args.balance,
        augment="none" if args.no_augment else args.augment,
        patience=args.patience, lr_patience=args.lr_patience, seed=args.seed,
        restart=args.restart, aggregate=args.aggregate, tta=args.tta, sbi=args.sbi,
        sbi_ratio=args.sbi_ratio, sbi_val=args.sbi_val)
    result = train(config, verbose=1 if sys.stdout.isatty() else 2)
    meta = result.metadata
    print(f"model:      {result.model_path}")
    print(f"backbone:   {meta['backbone']} at {meta['input_size']}px, "
          f"weights {meta['config']['weights']}")
    print(f"precision:  {result.precision} ({result.replicas} replica(s)); saved as float32")
    print(f"epochs:     {result.epochs_run} in {result.seconds / 60:.1f} min"
          + (" (resumed)" if result.resumed else ""))
    print(f"val AUC:    {result.best_val_auc:.4f} (crops)")
    print(f"threshold:  {result.threshold:.4f} for videos ({meta['threshold_source']}); "
          f"{meta['crop_threshold']:.4f} for crops")
    return 0


if __name__ == "__main__":
    run_cli(main)

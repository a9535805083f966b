#!/usr/bin/env python
"""Training benchmarks, printed as JSON.

throughput: training images/s through the real input pipeline (decode + augmentation +
  batching, dfpipe.train.inputs) against the same model fed an in-memory batch of the same shape,
  alternated in one process; ratio >= 0.9 means the pipeline does not starve the model.
precision: the same measurement in float32 and in the precision 'auto' picks here.
learning: train from scratch (no ImageNet weights offline) on ../shared/data/dfdc_faces split
  by source_video (no group on both sides) for a fixed number of epochs; validation AUC (a
  plumbing check: bench_detection.py measures detection on the test split).

The split is split.py's own (the crops-folder input, 70/15/15 by source_video, every crop kept),
made by bench_detection.split_crops_folder, so both benchmarks split the same way.

Reproduce: python bench/bench_train.py --check throughput precision learning
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_detection import split_crops_folder  # noqa: E402

from dfpipe.core.cpu import cpu_supports_bf16  # noqa: E402
from dfpipe.core.images import read_rgb  # noqa: E402
from dfpipe.core.splittable import load_split  # noqa: E402
from dfpipe.models.build import build_classifier
from dfpipe.models.registry import get_backbone  # noqa: E402
from dfpipe.split.quality import QualityRules  # noqa: E402
from dfpipe.train.config import TrainConfig
from dfpipe.train.devices import (
    choose_precision,
    gpu_capability,
    gpu_count,
    precision_policy,
)
from dfpipe.train.inputs import make_dataset  # noqa: E402
from dfpipe.train.loop import train  # noqa: E402

DFDC = REPO.parent / "shared" / "data" / "dfdc_faces"
log = logging.getLogger("bench_train")


def _fit_rate(model: Any, ds: Any, steps: int, warmup: int, batch: int) -> float:
    import keras

    stamps: list[float] = []
    stamp = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None: stamps.append(time.perf_counter()))
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[stamp],
              shuffle=False)
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


def _pipeline_rate(ds: Any, batches: int, batch: int) -> float:
    it = iter(ds)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def throughput(split: Path, backbone: str, size: int, batch: int, precision: str,
               steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Pipeline-fed vs memory-fed training images/s for one model, alternated ``rounds`` times."""
    import keras
    import tensorflow as tf

    crops = load_split(split, "train")
    feed = int(read_rgb(crops[0].path).shape[0])
    ds = make_dataset(crops, feed, batch, training=True, seed=0, augment=True).repeat()
    first = next(iter(ds))
    memory = tf.data.Dataset.from_tensors(first).repeat()
    with precision_policy(precision):
        model = build_classifier(get_backbone(backbone), size, None, 0.2)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(),
                      metrics=[keras.metrics.AUC(name="auc")])
        _fit_rate(model, memory, 1, 1, batch)  # trace once
        piped, mem = [], []
        for _ in range(rounds):
            mem.append(_fit_rate(model, memory, steps, warmup, batch))
            piped.append(_fit_rate(model, ds, steps, warmup, batch))
    alone = _pipeline_rate(ds, max(steps, 10), batch)
    m, p = statistics.median(mem), statistics.median(piped)
    return {"backbone": backbone, "model_size": size, "crop_size": feed, "batch": batch,
            "precision": precision, "steps": steps, "rounds": rounds,
            "memory_img_s": round(m, 2), "pipeline_img_s": round(p, 2),
            "ratio": round(p / m, 3), "pipeline_alone_img_s": round(alone, 1),
            "memory_runs": [round(v, 2) for v in mem],
            "pipeline_runs": [round(v, 2) for v in piped]}


def learning(split: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="bench-train-out-"))
    cfg = TrainConfig(data=split, output=out, backbone=args.learn_backbone, weights="none",
                      size=args.learn_size, batch_size=args.learn_batch, epochs=args.learn_epochs,
                      patience=args.learn_epochs, precision=args.learn_precision,
                      seed=args.seed)
    with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines; stdout is the JSON
        result = train(cfg, verbose=2)
    meta = result.metadata
    history = meta["training"]["history"]
    return {"data": str(DFDC), "split": meta["split"], "backbone": args.learn_backbone,
            "size": args.learn_size, "weights": "none", "epochs": args.learn_epochs,
            "precision": result.precision, "val_auc_best_epoch": round(result.best_val_auc, 4),
            "threshold": round(result.threshold, 4),
            "val_auc_per_epoch": [round(h.get("val_auc", float("nan")), 4) for h in history],
            "minutes": round(result.seconds / 60, 2), "output": str(out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--check", nargs="+", default=["throughput", "precision", "learning"],
                   choices=["throughput", "precision", "learning"], help="what to measure")
    p.add_argument("--data", type=Path, default=DFDC, help="dfdc_faces folder (labels.csv)")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each run")
    p.add_argument("--rounds", type=int, default=3, help="memory/pipeline runs alternated")
    p.add_argument("--models", nargs="+", default=["tiny:64:64", "xception:128:16"],
                   help="backbone:size:batch for the throughput check")
    p.add_argument("--precision-model", default="xception:128:16",
                   help="backbone:size:batch for float32 vs auto")
    p.add_argument("--learn-backbone", default="tiny", help="backbone of the learning check")
    p.add_argument("--learn-size", type=int, default=96, help="model input side")
    p.add_argument("--learn-batch", type=int, default=64, help="batch size")
    p.add_argument("--learn-epochs", type=int, default=10, help="fixed budget in epochs")
    p.add_argument("--learn-precision", default="auto", help="precision of the learning run")
    p.add_argument("--rows", type=int, default=8000,
                   help="first N rows of labels.csv (the 4,000 groups the folder held first)")
    p.add_argument("--seed", type=int, default=42, help="split and training seed")
    p.add_argument("--output", type=Path, help="also write the JSON here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.data / "labels.csv").is_file():
        sys.exit(f"error: {args.data}/labels.csv not found (needs ../shared/data/dfdc_faces)")
    auto = choose_precision("auto", gpu_capability(), cpu_supports_bf16())
    report: dict[str, Any] = {
        "command": "python bench/bench_train.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "gpus": gpu_count(), "cpu_bf16": cpu_supports_bf16(),
                    "python": platform.python_version(), "load_avg_start": os.getloadavg()},
        "auto_precision": auto}
    with tempfile.TemporaryDirectory(prefix="bench-train-split-") as tmp:
        keep_all = QualityRules(min_face=0, min_sharpness=0, min_confidence=0)
        split, _ = split_crops_folder(args.data, args.rows, Path(tmp), args.seed, keep_all)
        if "throughput" in args.check:
            report["throughput"] = []
            for spec in args.models:
                name, size, batch = spec.split(":")
                report["throughput"].append(throughput(split, name, int(size), int(batch), auto,
                                                       args.steps, args.warmup, args.rounds))
        if "precision" in args.check:
            name, size, batch = args.precision_model.split(":")
            report["precision"] = [throughput(split, name, int(size), int(batch), prec,
                                              args.steps, args.warmup, args.rounds)
                                   for prec in dict.fromkeys(["float32", auto])]
        if "learning" in args.check:
            report["learning"] = learning(split, args)
    report["machine"]["load_avg_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

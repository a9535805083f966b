#!/usr/bin/env python
"""Detection benchmark on held-out data, printed as JSON.

Takes ../shared/data/dfdc_faces (face crops + labels.csv) through split.py's own path (the
crops-folder input, 70/15/15 by source_video, so a real video and its fake never straddle
splits), trains with train.py's library code (dfpipe.train.loop), and scores the TEST split with
evaluate.py's library code (dfpipe.evaluate.run). The result is the test frame AUC with its
bootstrap interval, accuracy at the threshold chosen on validation, EER and log loss. The
validation AUC only chose the checkpoint; it is reported under that name, never as the result.

Reproduce: python bench/bench_detection.py --rows 8000 --backbone tiny --size 96 --epochs 10

Work (split, model, evaluation) goes to --workdir; run the same command with the same
--workdir again and the finished split and model are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dfpipe.core.errors import PipelineError  # noqa: E402
from dfpipe.core.files import SPLIT_REPORT, SPLIT_TABLE  # noqa: E402
from dfpipe.core.splittable import SPLIT_NAMES  # noqa: E402
from dfpipe.split import folder_input as cropfolder  # noqa: E402
from dfpipe.split import quality  # noqa: E402
from dfpipe.split import run as splits  # noqa: E402
from dfpipe.split.assign import DEFAULT_SEED  # noqa: E402

DFDC = REPO.parent / "shared" / "data" / "dfdc_faces"
RATIOS = (0.7, 0.15, 0.15)
GROUP_COLUMN = "source_video"
# dfdc_faces/README.md: "tight box around the face (no margin), resized to 224x224".
DFDC_MARGIN, DFDC_SIZE = 1.0, 224
SPLIT_STATE = "bench_split.json"
TRAIN_STATE = "bench_train.json"
log = logging.getLogger("bench_detection")


# ---------------------------------------------------------------- split (split.py's path)

def subset_labels(data: Path, rows: int | None, dest: Path) -> Path:
    """The first ``rows`` rows of ``data/labels.csv`` (all when None), written to ``dest``."""
    source = data / "labels.csv"
    if not source.is_file():
        raise PipelineError(f"{source} not found (the benchmark needs ../shared/data/dfdc_faces)")
    with open(source, newline="", encoding="utf-8") as fh:
        lines = fh.readlines()
    if rows is not None:
        if rows < 2:
            raise PipelineError("--rows must be at least 2")
        lines = lines[: rows + 1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, dest)
    return dest


def split_crops_folder(data: Path, rows: int | None, workdir: Path, seed: int,
                       rules: quality.QualityRules, ratios: tuple[float, ...] = RATIOS,
                       group_column: str = GROUP_COLUMN) -> tuple[Path, dict[str, Any]]:
    """Split the first ``rows`` crops of a crops folder by group, exactly as
    ``split.py --input DATA --labels ... --group-column source_video`` does; reuse a
    finished split made with the same inputs. Returns the split folder and its report."""
    labels = subset_labels(data, rows, workdir / "labels.csv")
    out = workdir / "split"
    key = {"data": str(Path(data).resolve()), "rows": rows, "seed": seed, "ratios": list(ratios),
           "group_column": group_column, "rules": [rules.min_face, rules.min_sharpness,
                                                   rules.min_confidence, rules.max_per_video],
           "labels_sha1": hashlib.sha1(labels.read_bytes()).hexdigest()}
    state = workdir / SPLIT_STATE
    if (out / SPLIT_TABLE).is_file() and state.is_file() and json.loads(state.read_text()) == key:
        log.info("reusing the split in %s", out)
        return out, json.loads((out / SPLIT_REPORT).read_text(encoding="utf-8"))
    loader = cropfolder.make_loader(labels, group_column,
                                    cropfolder.CropSettings(margin=DFDC_MARGIN, size=DFDC_SIZE))
    report = splits.run_split(data, out, rules=rules, ratios=ratios, seed=seed, overwrite=True,
                              loader=loader)
    state.write_text(json.dumps(key) + "\n", encoding="utf-8")
    return out, report


# ---------------------------------------------------------------- training options

def parse_train_args(pairs: list[str], known: set[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs for TrainConfig fields; VALUE is read as JSON when it parses
    (numbers, true/false, null), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise PipelineError(f"--train-arg {pair!r}: write KEY=VALUE (e.g. head_epochs=2)")
        if key not in known:
            raise PipelineError(f"--train-arg {key}: not a training option (known: "
                                f"{', '.join(sorted(known))})")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def train_options(args: argparse.Namespace, known: set[str]) -> dict[str, Any]:
    """TrainConfig keyword arguments: the named options given, then --train-arg pairs.
    Options left unset are not passed, so train.py's own defaults apply."""
    named = {"backbone": args.backbone, "weights": args.weights, "size": args.size,
             "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "patience": args.patience, "precision": args.precision, "seed": args.seed}
    options = {k: v for k, v in named.items() if v is not None}
    extra = parse_train_args(args.train_arg, known)
    clash = sorted(set(extra) & set(options))
    if clash:
        raise PipelineError(f"--train-arg {', '.join(clash)}: given twice (use the named option)")
    return {**options, **extra}


# ---------------------------------------------------------------- machine

def cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def git_state() -> dict[str, Any]:
    """Commit and branch of the code measured, and whether it had uncommitted changes."""
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "uncommitted_changes": None if status is None else bool(status)}


def machine(start: bool) -> dict[str, Any]:
    from dfpipe.core.cpu import cpu_supports_bf16
    from dfpipe.train.devices import gpu_count

    info: dict[str, Any] = {"load_avg_start" if start else "load_avg_end": os.getloadavg()}
    if start:
        import tensorflow as tf

        info = {"cpu_model": cpu_model(), "cores": os.cpu_count(),
                "cores_usable": len(os.sched_getaffinity(0)), "cpu_bf16": cpu_supports_bf16(),
                "gpus": gpu_count(), "python": platform.python_version(),
                "tensorflow": tf.__version__, **info}
    return info


# ---------------------------------------------------------------- the benchmark

def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def finished_model(out: Path, options: dict[str, Any]) -> Path | None:
    """A model this workdir already trained with the same options (so a rerun skips it)."""
    state = out / TRAIN_STATE
    if not state.is_file():
        return None
    saved = json.loads(state.read_text(encoding="utf-8"))
    model = Path(saved.get("model", ""))
    return model if saved.get("options") == options and model.is_file() else None


def test_result(ev: dict[str, Any], bootstrap: int) -> dict[str, Any]:
    """The test split's frame-level figures of one evaluation (metrics.json's dict)."""
    frames = ev["crops"]
    m = frames["metrics"]
    ci = frames["ci"] or {}
    return {
        "split": "test", "level": "frames", "tta": ev["tta"], "crops": frames["count"],
        "real": frames["real"], "fake": frames["fake"],
        "auc": _r(m["roc_auc"]), "auc_ci95": [_r(v) for v in ci.get("roc_auc") or []] or None,
        "accuracy": _r(m["accuracy"]),
        "accuracy_ci95": [_r(v) for v in ci.get("accuracy") or []] or None,
        "balanced_accuracy": _r(m["balanced_accuracy"]), "eer": _r(m["eer"]),
        "log_loss": _r(m["log_loss"]), "threshold": _r(ev["threshold"]["value"]),
        "threshold_source": ev["threshold"]["source"],
        "bootstrap": {"resamples": bootstrap, "unit": ci.get("unit")}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dfpipe.evaluate import run as evaluation
    from dfpipe.models.saving import read_metadata
    from dfpipe.train.config import TrainConfig
    from dfpipe.train.loop import train

    started = time.time()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-detection-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    known = {f.name for f in fields(TrainConfig)} - {"data", "output"}
    options = train_options(args, known)
    rules = quality.QualityRules(min_face=args.min_face, min_sharpness=args.min_sharpness,
                                 min_confidence=0.0)
    report: dict[str, Any] = {
        "command": "python bench/bench_detection.py " + shlex.join(sys.argv[1:]),
        "code": git_state(), "machine": machine(start=True), "workdir": str(workdir)}

    t0 = time.time()
    split_dir, split_report = split_crops_folder(args.data, args.rows, workdir, args.seed, rules)
    split_minutes = (time.time() - t0) / 60
    report["data"] = {
        "source": str(args.data), "rows": args.rows, "crops_listed": split_report["filter"][
            "crops_in"], "crops_kept": split_report["filter"]["crops_kept"],
        "split": {"method": "split.py crops-folder input", "group_column": GROUP_COLUMN,
                  "ratios": dict(zip(SPLIT_NAMES, RATIOS, strict=True)),
                  "seed": args.seed, "leak_check": split_report["leak_check"]},
        "filter": {k: split_report["filter"][k] for k in ("min_face", "min_sharpness",
                                                           "min_confidence", "removed")},
        "splits": {s: {k: split_report["splits"][s][k] for k in ("groups", "videos", "crops",
                                                                   "real_crops", "fake_crops")}
                   for s in SPLIT_NAMES}}

    out = workdir / "model"
    t0 = time.time()
    model_path = finished_model(out, options)
    if model_path is None:
        config = TrainConfig(data=split_dir, output=out, **options)
        with contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines; stdout is the JSON
            result = train(config, verbose=2)
        model_path = result.model_path
        (out / TRAIN_STATE).write_text(json.dumps({"options": options,
                                                   "model": str(model_path)}) + "\n",
                                       encoding="utf-8")
        reused = False
    else:
        log.info("reusing the model trained with the same options: %s", model_path)
        reused = True
    train_minutes = (time.time() - t0) / 60
    meta = read_metadata(model_path)
    history = meta["training"]["history"]
    val_aucs = [h.get("val_auc") for h in history]
    best = max(range(len(history)), key=lambda i: val_aucs[i] or -1.0) if history else None

    t0 = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        ev = evaluation.evaluate(model_path, split_dir, split="test", output=workdir / "eval",
                                 batch_size=args.eval_batch_size, bootstrap=args.bootstrap,
                                 seed=args.seed, progress=False)
    eval_minutes = (time.time() - t0) / 60
    report["result"] = test_result(ev, args.bootstrap)
    if args.tta != "none":
        with contextlib.redirect_stdout(sys.stderr):
            ev_tta = evaluation.evaluate(model_path, split_dir, split="test",
                                         output=workdir / f"eval-tta-{args.tta}",
                                         batch_size=args.eval_batch_size,
                                         bootstrap=args.bootstrap, seed=args.seed,
                                         progress=False, tta=args.tta)
        report[f"result_tta_{args.tta}"] = test_result(ev_tta, args.bootstrap)
    report["training"] = {
        "options_given": options, "config": meta["config"], "precision":
            meta["training"]["precision"], "epochs_run": meta["training"]["epochs_run"],
        "reused_model": reused, "model": str(model_path),
        "crop": meta.get("crop"),
        "validation_only_chose_the_checkpoint": {
            "best_epoch": None if best is None else int(history[best]["epoch"]) + 1,
            "val_auc_per_epoch": [_r(v) for v in val_aucs]}}
    report["minutes"] = {"split": round(split_minutes, 2), "train": round(train_minutes, 2),
                         "evaluate": round(eval_minutes, 2),
                         "total": round((time.time() - started) / 60, 2)}
    report["machine"].update(machine(start=False))
    return report


def learning_curve(args: argparse.Namespace) -> dict[str, Any]:
    """Test AUC against epochs and against data, for each augmentation strength: one full
    run (split, train, evaluate on test) per point, each in its own workdir under
    ``--workdir`` so a rerun reuses the finished points."""
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-curve-")).resolve()
    points = []
    for augment in args.curve_augment:
        for rows in args.curve_rows:
            for epochs in args.curve_epochs:
                point = argparse.Namespace(**vars(args))
                point.rows, point.epochs = rows, epochs
                point.workdir = root / f"rows{rows}-aug{augment}-ep{epochs}"
                point.train_arg = [*args.train_arg, f"augment={json.dumps(augment)}"]
                log.info("curve point: %s rows, augment %s, %s epochs", rows, augment, epochs)
                report = run(point)
                points.append({"rows": rows, "augment": augment, "epochs": epochs,
                               "epochs_run": report["training"]["epochs_run"],
                               "auc": report["result"]["auc"],
                               "auc_ci95": report["result"]["auc_ci95"],
                               **({f"auc_tta_{args.tta}": report[f"result_tta_{args.tta}"]["auc"],
                                   f"auc_ci95_tta_{args.tta}":
                                       report[f"result_tta_{args.tta}"]["auc_ci95"]}
                                  if args.tta != "none" else {}),
                               "val_auc_per_epoch": report["training"][
                                   "validation_only_chose_the_checkpoint"]["val_auc_per_epoch"],
                               "test_crops": report["result"]["crops"],
                               "train_minutes": report["minutes"]["train"],
                               "machine": report["machine"]})
    return {"command": "python bench/bench_detection.py " + shlex.join(sys.argv[1:]),
            "code": git_state(), "workdir": str(root), "curve": points}


def _list(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        return [kind(v) for v in text.split(",") if v.strip()]
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DFDC,
                   help="crops folder with labels.csv (path,label,video,source_video,...)")
    p.add_argument("--rows", type=int, default=None,
                   help="use the first N rows of labels.csv (None: all)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the split, model and evaluation (None: a new temp folder); "
                        "a rerun with the same folder reuses the finished split and model")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the split, the training and the bootstrap")
    p.add_argument("--min-face", type=float, default=0.0,
                   help="split's face-size rule (0: keep every crop, so the test split is the "
                        "whole held-out share)")
    p.add_argument("--min-sharpness", type=float, default=0.0,
                   help="split's sharpness rule (0: keep every crop; split.py's default 20 "
                        "removes a fifth of dfdc_faces: 16.5%% of real, 24.2%% of fake crops)")
    train = p.add_argument_group("training (None: train.py's own default)")
    train.add_argument("--backbone", default=None, help="backbone (train.py --backbone)")
    train.add_argument("--weights", default="none",
                       help="none (from scratch: no ImageNet download here) or a local .h5")
    train.add_argument("--size", type=int, default=None, help="model input side in pixels")
    train.add_argument("--epochs", type=int, default=None, help="train.py --epochs")
    train.add_argument("--batch-size", type=int, default=None, help="train.py --batch-size")
    train.add_argument("--lr", type=float, default=None, help="train.py --lr")
    train.add_argument("--patience", type=int, default=None,
                       help="train.py --patience (early stopping on val AUC)")
    train.add_argument("--precision", default=None, help="train.py --precision")
    train.add_argument("--train-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="any other TrainConfig field, repeatable (e.g. head_epochs=2, "
                            "augment=false); VALUE is read as JSON when it parses")
    curve = p.add_argument_group("learning curve (any of these: one run per grid point)")
    curve.add_argument("--curve-epochs", type=_list(int), default=None,
                       help="comma-separated epochs, e.g. 10,20,30")
    curve.add_argument("--curve-rows", type=_list(int), default=None,
                       help="comma-separated labels.csv rows, e.g. 8000,16000,24000")
    curve.add_argument("--curve-augment", type=_list(str), default=None,
                       help="comma-separated augmentation strengths, e.g. none,full")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples for the 95%% intervals")
    ev.add_argument("--eval-batch-size", type=int, default=64, help="crops per model call")
    ev.add_argument("--tta", choices=("none", "flip"), default="flip",
                    help="also score the test split with this test-time augmentation "
                         "(flip: the mean of a crop's and its mirror's scores) and report both")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    curve = any(v is not None for v in (args.curve_epochs, args.curve_rows,
                                        args.curve_augment))
    if curve:
        args.curve_epochs = args.curve_epochs or [args.epochs]
        args.curve_rows = args.curve_rows or [args.rows]
        args.curve_augment = args.curve_augment or ["full"]
    try:
        report = learning_curve(args) if curve else run(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fine-tune a backbone on a split folder and save a self-describing detector.

Two phases: the head alone with the backbone frozen, then the top of the backbone at a lower
learning rate with batch norm frozen. Everything is decided on the validation split only:
the checkpoint kept (best val AUC), early stopping, learning-rate cuts and the decision
threshold. The saved model is a float32 copy of the best weights, whatever precision it was
trained in, so evaluation and the app get the same numbers on any machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, figures
from .data import class_weights, feed_size, make_dataset, read_split, split_counts
from .errors import PipelineError
from .labels import CLASS_NAMES
from .modelio import TRAINING_DONE, TRAINING_LOG, save_model
from .models import (
    Backbone,
    backbone_of,
    build_detector,
    check_size,
    freeze_backbone,
    get_backbone,
    unfreeze_top,
)
from .operating import choose_operating_point, choose_threshold  # noqa: F401 - re-exported
from .quality import rules_from_split
from .sbidata import read_sbi_train, sbi_training
from .scoring import aggregator

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
SPLIT_REPORT = "split_report.json"
CHECKPOINT = ".best.weights.h5"
CURVES_PNG = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"
THRESHOLD_RULE = "max Youden's J (TPR - FPR, i.e. balanced accuracy) on validation crops"


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; None means "the backbone's default" until :func:`resolve`."""

    data: Path = Path("preprocessed_split")
    output: Path = Path("models")
    backbone: str = "xception"
    weights: str = "imagenet"
    size: int | None = None
    batch_size: int = 32
    head_epochs: int = 2
    epochs: int = 20
    lr: float | None = None
    fine_tune_lr: float | None = None
    dropout: float | None = None
    unfreeze: int | None = None
    precision: str = "auto"
    balance: str = "weights"
    augment: bool = True
    patience: int = 4
    lr_patience: int = 2
    lr_factor: float = 0.3
    seed: int = 42
    aggregate: str = "mean"
    sbi: bool = False
    sbi_ratio: float = 1.0


@dataclass
class TrainResult:
    """What a run produced, for the script's summary and for tests."""

    model_path: Path
    metadata: dict[str, Any]
    precision: str
    replicas: int
    best_val_auc: float
    threshold: float
    epochs_run: int
    seconds: float
    val_scores: np.ndarray = field(repr=False)
    val_paths: list[Path] = field(repr=False)


# ---------------------------------------------------------------- precision and devices

def choose_precision(requested: str, has_gpu: bool, cpu_has_bf16: bool) -> str:
    """The Keras dtype policy for ``requested``: 'auto' is float16 on a GPU, bfloat16 on a CPU
    with native bf16 (AVX512-BF16 / AMX), float32 otherwise."""
    if requested not in PRECISIONS:
        raise PipelineError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if has_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16 else "float32"


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU flags list native bf16 arithmetic (avx512_bf16 or amx_bf16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def gpu_count() -> int:
    """GPUs TensorFlow can see."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Set Keras' global dtype policy for the block, then put the previous one back."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def strategy_kind(gpus: int, tf_config: str | None) -> str:
    """'multi_worker' when TF_CONFIG names a cluster, 'mirrored' on several GPUs, else 'default'."""
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
        except (json.JSONDecodeError, AttributeError):
            raise PipelineError("TF_CONFIG is not valid JSON: fix or unset it") from None
        if cluster:
            return "multi_worker"
    return "mirrored" if gpus > 1 else "default"


def make_strategy(kind: str) -> Any:
    """The tf.distribute strategy for a kind from :func:`strategy_kind`."""
    import tensorflow as tf

    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(tf_config: str | None) -> bool:
    """Whether this process writes the outputs (the chief, or worker 0 without a chief)."""
    if not tf_config:
        return True
    spec = json.loads(tf_config)
    task = spec.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in spec.get("cluster", {})


# ---------------------------------------------------------------- threshold, crop settings

def read_crop_settings(root: Path) -> dict[str, Any] | None:
    """Crop margin, size, detector and frame sampling recorded by split.py (key ``preprocess``
    of split_report.json); None, with a warning, when the split folder does not say."""
    path = Path(root) / SPLIT_REPORT
    if not path.is_file():
        log.warning("%s not found: the model's crop settings are unknown (recorded as null)", path)
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc}): re-run split.py") from None
    pre = report.get("preprocess") if isinstance(report, dict) else None
    if not isinstance(pre, dict):
        log.warning("%s has no 'preprocess' settings: the model's crop settings are unknown "
                    "(recorded as null)", path)
        return None
    sampling = {k: pre[k] for k in ("every", "frames", "faces") if k in pre}
    return {"margin": pre.get("margin"), "size": pre.get("size"),
            "detector": pre.get("detector"), "sampling": sampling, "settings": pre}


# ---------------------------------------------------------------- configuration

def resolve(config: TrainConfig) -> TrainConfig:
    """Fill the backbone's defaults; training from scratch (weights none) has no head phase."""
    spec = get_backbone(config.backbone)
    weights = _weights_arg(config.weights)
    for name in ("batch_size", "patience", "lr_patience"):
        if getattr(config, name) < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")
    if config.head_epochs < 0 or config.epochs < 0:
        raise PipelineError("--head-epochs and --epochs cannot be negative")
    if config.precision not in PRECISIONS:
        raise PipelineError(f"unknown precision '{config.precision}': use one of "
                            f"{', '.join(PRECISIONS)}")
    if config.sbi and (config.balance == "sampling" or not 0.0 < config.sbi_ratio <= 1.0):
        raise PipelineError("--sbi needs --sbi-ratio in (0, 1] and --balance weights or none "
                            "(pairs come in whole; balanced sampling does not apply)")
    resolved = replace(
        config, backbone=spec.name, data=Path(config.data).resolve(),
        output=Path(config.output).resolve(),
        weights="none" if weights is None else config.weights,
        size=config.size or spec.input_size,
        lr=config.lr if config.lr is not None else spec.head_lr,
        fine_tune_lr=config.fine_tune_lr if config.fine_tune_lr is not None else spec.fine_tune_lr,
        dropout=config.dropout if config.dropout is not None else spec.dropout,
        unfreeze=config.unfreeze if config.unfreeze is not None else spec.unfreeze)
    if weights is None:
        # Nothing pretrained to protect: no head phase, every layer (batch norm included)
        # trains for --epochs at the head's learning rate.
        if config.head_epochs:
            log.info("--weights none: no head-only phase; training all layers for %d epochs",
                     config.epochs)
        resolved = replace(resolved, head_epochs=0, unfreeze=-1, fine_tune_lr=resolved.lr)
    aggregator(config.aggregate)
    if resolved.head_epochs + resolved.epochs < 1:
        raise PipelineError("nothing to train: give --epochs 1 or more")
    return resolved


def _weights_arg(weights: str) -> str | None:
    text = str(weights).strip()
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    return text


# ---------------------------------------------------------------- training

def train(config: TrainConfig, verbose: int = 2, strategy: Any | None = None) -> TrainResult:
    """Train, pick the best epoch on validation, save model + metadata + logs under output.

    ``strategy`` overrides the tf.distribute strategy picked from the GPUs and TF_CONFIG.
    """
    started = time.time()
    cfg = resolve(config)
    spec = get_backbone(cfg.backbone)
    check_size(spec, cfg.size)
    train_crops = read_sbi_train(cfg.data, cfg.sbi_ratio) if cfg.sbi else read_split(
        cfg.data, "train")
    val_crops = read_split(cfg.data, "val")
    crop = read_crop_settings(cfg.data)
    feed = feed_size(train_crops, crop)

    import keras

    precision = choose_precision(cfg.precision, gpu_count() > 0, cpu_supports_bf16())
    tf_config = os.environ.get("TF_CONFIG")
    kind = strategy_kind(gpu_count(), tf_config) if strategy is None else "given"
    strategy = make_strategy(kind) if strategy is None else strategy
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = cfg.batch_size * replicas
    log.info("precision %s (asked: %s); %s strategy, %d replica(s), global batch %d",
             precision, cfg.precision, kind, replicas, global_batch)
    out = Path(cfg.output) if is_chief(tf_config) else Path(tempfile.mkdtemp(prefix="worker-"))
    out.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.seed)
    sbi = sbi_training(train_crops, cfg.data, out, cfg.sbi_ratio, feed, global_batch, cfg.seed,
                       cfg.augment) if cfg.sbi else None
    train_ds = sbi.dataset if sbi else make_dataset(
        train_crops, feed, global_batch, training=True, seed=cfg.seed, augment=cfg.augment,
        balance=cfg.balance)
    val_ds = make_dataset(val_crops, feed, global_batch, training=False)
    fit_kwargs: dict[str, Any] = {"validation_data": val_ds, "verbose": verbose,
                                  "shuffle": False}  # tf.data already shuffles, seeded
    if cfg.balance == "weights":
        fit_kwargs["class_weight"] = class_weights(
            sbi.labels if sbi else [c.label for c in train_crops])
    elif cfg.balance == "sampling":
        fit_kwargs["steps_per_epoch"] = math.ceil(len(train_crops) / global_batch)

    (out / TRAINING_DONE).unlink(missing_ok=True)  # the monitor reads it as "finished"
    with precision_policy(precision), strategy.scope():
        history = _fit_two_phases(cfg, spec, train_ds, out, fit_kwargs)
    with precision_policy("float32"):
        final = build_detector(spec, cfg.size, None, cfg.dropout)
        final.load_weights(out / CHECKPOINT)
    scores = final.predict(val_ds, verbose=0).reshape(-1).astype(np.float64)
    val_labels = [c.label for c in val_crops]
    point = choose_operating_point([c.video_id for c in val_crops], val_labels, scores,
                                   cfg.aggregate, "train.py --aggregate")
    threshold = point["threshold"]
    val_auc = _auc(val_labels, scores)
    meta = _metadata(cfg, spec, precision, replicas, kind, feed, crop, threshold, val_auc,
                     train_crops, val_crops, history)
    boundary = phase_boundary(history)
    meta.update(point, phase_boundary=boundary, quality=rules_from_split(cfg.data))
    meta["self_blending"] = sbi.settings if sbi else None
    model_path = out / f"{spec.name}_best.h5"
    save_model(final, model_path, meta)
    (out / CHECKPOINT).unlink(missing_ok=True)
    figures.training_curves(out / TRAINING_LOG, out / CURVES_PNG, fine_tune_epoch=boundary)
    _write_json(out / TRAINING_DONE, {"finished": time.time(), "epochs": len(history),
                                      "model": str(model_path)})
    return TrainResult(model_path=model_path, metadata=meta, precision=precision,
                       replicas=replicas, best_val_auc=val_auc, threshold=threshold,
                       epochs_run=len(history), seconds=time.time() - started,
                       val_scores=scores, val_paths=[c.path for c in val_crops])


def _fit_two_phases(cfg: TrainConfig, spec: Backbone, train_ds: Any, out: Path,
                    fit_kwargs: dict[str, Any]) -> list[dict[str, float]]:
    """Head with the backbone frozen, then the top of the backbone; the best weights (val AUC
    over both phases) end in the checkpoint file. Returns the per-epoch logs."""
    weights = _weights_arg(cfg.weights)
    checkpoint = out / CHECKPOINT
    checkpoint.unlink(missing_ok=True)
    (out / TRAINING_LOG).unlink(missing_ok=True)
    history: list[dict[str, float]] = []
    model = build_detector(spec, cfg.size, weights, cfg.dropout)
    best, epoch = -math.inf, 0
    if cfg.head_epochs > 0:
        freeze_backbone(model)
        best, epoch = _fit_phase(model, train_ds, cfg, cfg.lr, 0, cfg.head_epochs, best, out,
                                 history, fit_kwargs)
        for entry in history:
            entry["phase"] = 1
        if checkpoint.is_file():
            model.load_weights(checkpoint)
    if cfg.epochs > 0:
        opened = unfreeze_top(model, cfg.unfreeze, freeze_batchnorm=weights is not None)
        log.info("training the top %d of %d backbone layers at lr %g%s", opened,
                 len(backbone_of(model).layers), cfg.fine_tune_lr,
                 " (batch norm frozen)" if weights is not None else "")
        _fit_phase(model, train_ds, cfg, cfg.fine_tune_lr, epoch, epoch + cfg.epochs, best, out,
                   history, fit_kwargs)
    if not checkpoint.is_file():
        log.warning("validation AUC never improved to a finite value; keeping the last weights")
        model.save_weights(checkpoint)
    return history


def phase_boundary(history: Sequence[dict[str, float]]) -> int:
    """Epochs phase 1 really ran (early stopping may end it before --head-epochs)."""
    return sum(1 for entry in history if entry.get("phase") == 1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _auc(labels: Sequence[int], scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _fit_phase(model: Any, train_ds: Any, cfg: TrainConfig, lr: float, first: int, last: int,
               best: float, out: Path, history: list[dict[str, float]],
               fit_kwargs: dict[str, Any]) -> tuple[float, int]:
    """Compile at ``lr`` and fit epochs [first, last); return (best val AUC, epochs done)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.AUC(name="auc"),
                           keras.metrics.BinaryAccuracy(name="accuracy")])
    callbacks = [
        _learning_rate_to_logs(),
        keras.callbacks.CSVLogger(str(out / TRAINING_LOG), append=first > 0),
        keras.callbacks.ModelCheckpoint(
            str(out / CHECKPOINT), monitor="val_auc", mode="max", save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best if math.isfinite(best) else None),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_auc", mode="max", factor=cfg.lr_factor,
                                          patience=cfg.lr_patience, min_lr=1e-7),
        keras.callbacks.TensorBoard(str(out / TENSORBOARD_DIR), write_graph=False),
    ]
    with _pipeline_errors():
        run = model.fit(train_ds, initial_epoch=first, epochs=last, callbacks=callbacks,
                        **fit_kwargs)
    epochs = run.epoch
    for i, epoch in enumerate(epochs):
        history.append({"epoch": epoch, **{k: float(v[i]) for k, v in run.history.items()}})
    aucs = [v for v in run.history.get("val_auc", []) if math.isfinite(v)]
    return max([best, *aucs]), (epochs[-1] + 1 if epochs else first)


def _learning_rate_to_logs() -> Any:
    """A callback putting the epoch's learning rate in the logs as ``lr`` (CSVLogger's column)."""
    import keras

    class LearningRateToLogs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                rate = self.model.optimizer.learning_rate
                logs["lr"] = float(keras.ops.convert_to_numpy(rate))

    return LearningRateToLogs()


@contextlib.contextmanager
def _pipeline_errors() -> Iterator[None]:
    """Turn an unreadable crop inside tf.data into the reader's one-line PipelineError."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as exc:
        for line in str(exc).splitlines():
            if "PipelineError: " in line:
                raise PipelineError(line.split("PipelineError: ", 1)[1].strip()) from None
        raise


def _metadata(cfg: TrainConfig, spec: Backbone, precision: str, replicas: int, kind: str,
              feed: int, crop: dict[str, Any] | None, threshold: float, val_auc: float,
              train_crops: Sequence[Any], val_crops: Sequence[Any],
              history: list[dict[str, float]]) -> dict[str, Any]:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {
        "class_names": list(CLASS_NAMES),
        "input_size": cfg.size,
        "backbone": spec.name,
        "preprocessing": {
            "input": "RGB, float, 0..255, any square size (dfpipe.images.read_rgb decodes)",
            "resize": f"bilinear (antialiased) to {cfg.size}x{cfg.size}, inside the model",
            "scaling": spec.preprocessing + ", inside the model",
            "trained_on_size": feed,
        },
        "crop": crop,
        "threshold": threshold,
        "threshold_source": f"{THRESHOLD_RULE} ({len(val_crops)} crops)",
        "val_auc": val_auc,
        "config": config,
        "split": {"folder": str(Path(cfg.data).resolve()),
                  "train": split_counts(train_crops).as_dict(),
                  "val": split_counts(val_crops).as_dict()},
        "training": {"precision": precision, "saved_dtype": "float32", "strategy": kind,
                     "replicas": replicas, "global_batch": cfg.batch_size * replicas,
                     "epochs_run": len(history), "history": history},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dfpipe_version": __version__,
    }


def config_fields() -> dict[str, Any]:
    """Each TrainConfig option and its default, so the CLI shows the same defaults."""
    return {f.name: f.default for f in fields(TrainConfig)}

"""Fine-tune a backbone on a split folder and save a self-describing classifier.

Two phases: the head alone with the backbone frozen (warm-up), then the backbone's top
``unfreeze`` layers (Xception: all) with AdamW and a cosine or plateau schedule, batch norm
trained when each replica's batch is large enough. Each epoch draws at most
``frames_per_video`` crops per video. Everything is decided on the validation split only (one
fixed draw): the checkpoint kept (best val AUC), early stopping, learning-rate cuts and the
decision threshold. After every epoch the run's state is committed (:mod:`dfpipe.train.resume`),
so a killed run started again with the same command continues where it was. The saved model
is a float32 copy of the best weights, of the same architecture, whatever precision it was
trained in, so evaluation and the app get the same numbers on any machine.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe import __version__
from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.evaluate import figures
from dfpipe.models.registry import (
    SCHEDULES,
    Backbone,
    backbone_of,
    batchnorm_trainable,
    build_classifier,
    check_size,
    freeze_backbone,
    get_backbone,
    unfreeze_top,
)
from dfpipe.models.saving import TRAINING_DONE, TRAINING_LOG, save_model
from dfpipe.scoring.crops import aggregator
from dfpipe.scoring.operating import choose_operating_point, choose_threshold  # noqa: F401 - re-exported
from dfpipe.split.quality import rules_from_split
from dfpipe.train.devices import (  # noqa: F401 - re-exported: train.py and the benchmarks import them here
    PRECISIONS,
    choose_precision,
    cpu_supports_bf16,
    gpu_count,
    is_chief,
    make_strategy,
    precision_policy,
    strategy_kind,
)
from dfpipe.train.inputs import (
    class_weights,
    draw_per_video,
    epoch_plan,
    feed_size,
    make_dataset,
    read_split,
    split_counts,
)
from dfpipe.train.resume import RESUME_DIR, RunBackup, RunState
from dfpipe.train.sbi.inputs import SBITraining, read_sbi_train, sbi_training

log = logging.getLogger(__name__)

SPLIT_REPORT = "split_report.json"
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
    head_epochs: int | None = None
    epochs: int | None = None
    lr: float | None = None
    fine_tune_lr: float | None = None
    dropout: float | None = None
    unfreeze: int | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    freeze_bn: bool | None = None
    frames_per_video: int = 32
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
    restart: bool = False


@dataclass(frozen=True)
class Phase:
    """One stretch of training with one optimizer: ``head`` (backbone frozen) or
    ``fine_tune`` (the top of the backbone open)."""

    name: str
    epochs: int
    lr: float
    schedule: str  # constant, cosine or plateau


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
    resumed: bool = False


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
    d = spec.training
    weights = _weights_arg(config.weights)
    for name in ("batch_size", "patience", "lr_patience"):
        if getattr(config, name) < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")
    if (config.head_epochs or 0) < 0 or (config.epochs or 0) < 0:
        raise PipelineError("--head-epochs and --epochs cannot be negative")
    if config.frames_per_video < 0:
        raise PipelineError("--frames-per-video cannot be negative (0: every crop)")
    if config.precision not in PRECISIONS:
        raise PipelineError(f"unknown precision '{config.precision}': use one of "
                            f"{', '.join(PRECISIONS)}")
    if config.sbi and (config.balance == "sampling" or not 0.0 < config.sbi_ratio <= 1.0):
        raise PipelineError("--sbi needs --sbi-ratio in (0, 1] and --balance weights or none "
                            "(pairs come in whole; balanced sampling does not apply)")
    if config.schedule is not None and config.schedule not in SCHEDULES:
        raise PipelineError(f"unknown schedule '{config.schedule}': use one of "
                            f"{', '.join(SCHEDULES)}")

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    resolved = replace(
        config, backbone=spec.name, data=Path(config.data).resolve(),
        output=Path(config.output).resolve(),
        weights="none" if weights is None else config.weights,
        size=config.size or spec.input_size,
        head_epochs=given(config.head_epochs, d.head_epochs),
        epochs=given(config.epochs, d.epochs),
        lr=given(config.lr, d.head_lr), fine_tune_lr=given(config.fine_tune_lr, d.lr),
        dropout=given(config.dropout, d.dropout), unfreeze=given(config.unfreeze, d.unfreeze),
        weight_decay=given(config.weight_decay, d.weight_decay),
        schedule=given(config.schedule, d.schedule), freeze_bn=given(config.freeze_bn,
                                                                    d.freeze_bn))
    if weights is None:
        # Nothing pretrained to protect: no head phase, every layer (batch norm included)
        # trains for --epochs at the head's learning rate.
        if resolved.head_epochs:
            log.info("--weights none: no head-only phase; training all layers for %d epochs",
                     resolved.epochs)
        resolved = replace(resolved, head_epochs=0, unfreeze=-1, fine_tune_lr=resolved.lr)
    aggregator(config.aggregate)
    if resolved.head_epochs + resolved.epochs < 1:
        raise PipelineError("nothing to train: give --epochs 1 or more")
    return resolved


def phases_of(cfg: TrainConfig) -> list[Phase]:
    """The run's phases: the head warm-up at a constant rate, then fine-tuning on the schedule."""
    phases = []
    if cfg.head_epochs:
        phases.append(Phase("head", cfg.head_epochs, cfg.lr, "constant"))
    if cfg.epochs:
        phases.append(Phase("fine_tune", cfg.epochs, cfg.fine_tune_lr, cfg.schedule))
    return phases


def _weights_arg(weights: str) -> str | None:
    text = str(weights).strip()
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    return text


# ---------------------------------------------------------------- training

def train(config: TrainConfig, verbose: int = 2, strategy: Any | None = None) -> TrainResult:
    """Train (or resume), pick the best epoch on validation, save model + metadata + logs.

    ``strategy`` overrides the tf.distribute strategy picked from the GPUs and TF_CONFIG.
    """
    started = time.time()
    cfg = resolve(config)
    spec = get_backbone(cfg.backbone)
    check_size(spec, cfg.size)
    train_crops = read_sbi_train(cfg.data, cfg.sbi_ratio) if cfg.sbi else read_split(
        cfg.data, "train")
    val_all = read_split(cfg.data, "val")
    val_crops = draw_per_video(val_all, cfg.frames_per_video)  # one fixed draw
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

    backup = RunBackup(out / RESUME_DIR, _identity(cfg))
    state, resumed = backup.start(cfg.restart)
    sbi = sbi_training(train_crops, cfg.data, out, cfg.sbi_ratio, feed, global_batch, cfg.seed,
                       cfg.augment, cfg.frames_per_video) if cfg.sbi else None
    (out / TRAINING_DONE).unlink(missing_ok=True)  # the monitor reads it as "finished"
    _write_log(out / TRAINING_LOG, state.history)  # a resumed log: committed epochs only
    keras.utils.set_random_seed(cfg.seed)
    val_ds = make_dataset(val_crops, feed, global_batch, training=False)
    run = _Run(cfg, spec, train_crops, val_ds, feed, global_batch, out, backup, verbose, sbi)
    if not state.finished:
        with precision_policy(precision), strategy.scope():
            run.fit(state)
    with precision_policy("float32"):
        final = build_classifier(spec, cfg.size, None, cfg.dropout)
        final.load_weights(backup.weights_path(state.best_file or state.weights))
    scores = final.predict(val_ds, verbose=0).reshape(-1).astype(np.float64)
    val_labels = [c.label for c in val_crops]
    point = choose_operating_point([c.video_id for c in val_crops], val_labels, scores,
                                   cfg.aggregate, "train.py --aggregate")
    threshold = point["threshold"]
    val_auc = _auc(val_labels, scores)
    meta = _metadata(cfg, spec, precision, replicas, kind, feed, crop, threshold, val_auc,
                     train_crops, val_all, val_crops, state, resumed)
    boundary = phase_boundary(cfg, state)
    meta.update(point, phase_boundary=boundary, quality=rules_from_split(cfg.data))
    meta["self_blending"] = sbi.settings if sbi else None
    model_path = out / f"{spec.name}_best.h5"
    save_model(final, model_path, meta)
    figures.training_curves(out / TRAINING_LOG, out / CURVES_PNG, fine_tune_epoch=boundary)
    _write_json(out / TRAINING_DONE, {"finished": time.time(), "epochs": len(state.history),
                                      "model": str(model_path)})
    backup.clear()  # only now: the model is saved
    return TrainResult(model_path=model_path, metadata=meta, precision=precision,
                       replicas=replicas, best_val_auc=val_auc, threshold=threshold,
                       epochs_run=len(state.history), seconds=time.time() - started,
                       val_scores=scores, val_paths=[c.path for c in val_crops],
                       resumed=resumed)


@dataclass
class _Run:
    """The epoch loop over the phases, committing the state after every epoch."""

    cfg: TrainConfig
    spec: Backbone
    train_crops: Sequence[Any]
    val_ds: Any
    feed: int
    global_batch: int
    out: Path
    backup: RunBackup
    verbose: int
    sbi: SBITraining | None = None

    def fit(self, state: RunState) -> None:
        """Run every phase from where ``state`` stands to the end; mark it finished."""
        cfg = self.cfg
        labels = self.sbi.labels if self.sbi else epoch_plan(
            self.train_crops, 0, cfg.seed, cfg.frames_per_video, cfg.balance).labels
        n = len(labels)
        self.steps = n // self.global_batch if n > self.global_batch else 1
        self.class_weight = class_weights(labels) if cfg.balance == "weights" else None
        fresh = state.best_file is None and state.weights is None
        model = build_classifier(self.spec, cfg.size,
                                 _weights_arg(cfg.weights) if fresh else None, cfg.dropout)
        phases = phases_of(cfg)
        while state.phase < len(phases):
            self._phase(model, phases[state.phase], state)
            state.next_phase()
            self.backup.commit(state)
        state.finished = True
        self.backup.commit(state)

    def _phase(self, model: Any, phase: Phase, state: RunState) -> None:
        cfg, backup = self.cfg, self.backup
        if len(state.phase_starts) <= state.phase:
            state.phase_starts.append(state.epoch)
        end = state.phase_starts[state.phase] + phase.epochs
        start_from = backup.weights_path(state.best_file or state.weights)
        if not state.in_phase() and start_from is not None:
            model.load_weights(start_from)  # a phase starts from the best epoch so far
        self._compile(model, phase)
        if state.in_phase():
            model.optimizer.build(model.trainable_variables)
            model.load_weights(backup.weights_path(state.weights))  # weights and optimizer
        if phase.schedule == "plateau" and state.lr is None:
            state.lr = phase.lr
        lr_patience = cfg.lr_patience if phase.schedule == "plateau" else None
        while not state.stopped and state.epoch < end:
            epoch = state.epoch
            if state.lr is not None:
                model.optimizer.learning_rate = state.lr
            _reseed(model, cfg.seed, epoch)
            train_ds = self.sbi.dataset(epoch) if self.sbi else make_dataset(
                self.train_crops, self.feed, self.global_batch, training=True, seed=cfg.seed,
                augment=cfg.augment, balance=cfg.balance, epoch=epoch,
                frames_per_video=cfg.frames_per_video)
            with _pipeline_errors():
                run = model.fit(train_ds, validation_data=self.val_ds, initial_epoch=epoch,
                                epochs=end, verbose=self.verbose, shuffle=False,
                                class_weight=self.class_weight,
                                callbacks=[_learning_rate_to_logs(), _one_epoch(),
                                           keras_tensorboard(self.out)])
            logs = {k: float(v[-1]) for k, v in run.history.items()}
            is_best = state.record(epoch, logs, cfg.patience, lr_patience, cfg.lr_factor)
            backup.commit(state, model, is_best)
            _write_log(self.out / TRAINING_LOG, state.history)

    def _compile(self, model: Any, phase: Phase) -> None:
        """Open the phase's layers and compile a fresh AdamW on the phase's schedule."""
        import keras

        cfg = self.cfg
        pretrained = _weights_arg(cfg.weights) is not None
        if phase.name == "head":
            freeze_backbone(model)
        else:
            bn = batchnorm_trainable(cfg.batch_size, bool(cfg.freeze_bn), pretrained)
            opened = unfreeze_top(model, cfg.unfreeze, freeze_batchnorm=not bn)
            log.info("training the top %d of %d backbone layers at lr %g (%s schedule), batch "
                     "norm %s", opened, len(backbone_of(model).layers), phase.lr,
                     phase.schedule, "trained" if bn else "frozen")
        rate: Any = phase.lr
        if phase.schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(phase.lr, phase.epochs * self.steps)
        optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=cfg.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(),
                      metrics=[keras.metrics.AUC(name="auc"),
                               keras.metrics.BinaryAccuracy(name="accuracy")])


def _reseed(model: Any, seed: int, epoch: int) -> None:
    """Set every random layer's generator (dropout) from (seed, epoch), so a resumed epoch
    draws what it would have drawn in a run never killed."""
    import keras

    layers, i = [model], 0
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                start = np.random.default_rng([seed, epoch, i]).integers(0, 2**31, 2)
                value.state.assign(np.asarray(start, dtype=value.state.dtype))
                i += 1


def keras_tensorboard(out: Path) -> Any:
    """TensorBoard epoch summaries under ``out``."""
    import keras

    return keras.callbacks.TensorBoard(str(out / TENSORBOARD_DIR), write_graph=False)


def _one_epoch() -> Any:
    """Stop ``fit`` after one epoch: each epoch gets its own draw of crops, while Keras still
    shows the epoch as k/total."""
    import keras

    class OneEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.model.stop_training = True

    return OneEpoch()


def _identity(cfg: TrainConfig) -> dict[str, Any]:
    """The options a resumed run must share with the run it continues (JSON-normalised)."""
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
            if k != "restart"}
    return json.loads(json.dumps(data))


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    """The per-epoch log as Keras' CSVLogger lays it out (epoch, then sorted keys), rewritten
    atomically from the committed state, so no epoch appears twice or goes missing."""
    if not history:
        path.unlink(missing_ok=True)
        return
    keys = sorted({k for row in history for k in row if k != "epoch"})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *keys])
        for row in history:
            writer.writerow([int(row["epoch"]), *(row.get(k, "") for k in keys)])
    os.replace(tmp, path)


def phase_boundary(cfg: TrainConfig, state: RunState) -> int:
    """Epochs phase 1 (the head warm-up) really ran: early stopping may end it before
    --head-epochs; 0 when there is no head phase."""
    phases = phases_of(cfg)
    if not phases or phases[0].name != "head":
        return 0
    return state.phase_starts[1] if len(state.phase_starts) > 1 else len(state.history)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _auc(labels: Sequence[int], scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


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
              train_crops: Sequence[Any], val_all: Sequence[Any], val_crops: Sequence[Any],
              state: RunState, resumed: bool) -> dict[str, Any]:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    pretrained = _weights_arg(cfg.weights) is not None
    phases = phases_of(cfg)
    run_phases = []
    for i, first in enumerate(state.phase_starts):
        last = state.phase_starts[i + 1] if i + 1 < len(state.phase_starts) else len(
            state.history)
        run_phases.append({"name": phases[i].name, "first_epoch": first,
                           "epochs_run": last - first, "lr": phases[i].lr,
                           "schedule": phases[i].schedule})
    per_epoch = len(epoch_plan(train_crops, 0, cfg.seed, cfg.frames_per_video, cfg.balance).crops)
    return {
        "class_names": list(CLASS_NAMES),
        "input_size": cfg.size,
        "backbone": spec.name,
        "model_config": asdict(spec.model),
        "train_config": {
            "head_epochs": cfg.head_epochs, "epochs": cfg.epochs, "head_lr": cfg.lr,
            "lr": cfg.fine_tune_lr, "optimizer": "AdamW", "weight_decay": cfg.weight_decay,
            "schedule": cfg.schedule, "unfreeze": cfg.unfreeze, "dropout": cfg.dropout,
            "batch_norm_trained": batchnorm_trainable(cfg.batch_size, bool(cfg.freeze_bn),
                                                      pretrained),
            "frames_per_video": cfg.frames_per_video, "batch_size": cfg.batch_size,
            "backbone_defaults": asdict(spec.training)},
        "preprocessing": {
            "input": "RGB, float, 0..255, any square size (dfpipe.core.images.read_rgb decodes)",
            "resize": f"bilinear (antialiased) to {cfg.size}x{cfg.size}, inside the model",
            "scaling": spec.model.describe_scaling() + ", inside the model",
            "trained_on_size": feed,
        },
        "crop": crop,
        "threshold": threshold,
        "threshold_source": f"{THRESHOLD_RULE} ({len(val_crops)} crops)",
        "val_auc": val_auc,
        "config": config,
        "split": {"folder": str(Path(cfg.data).resolve()),
                  "train": split_counts(train_crops).as_dict(),
                  "val": split_counts(val_all).as_dict()},
        "sampling": {"frames_per_video": cfg.frames_per_video,
                     "train_crops_per_epoch": per_epoch, "val_crops": len(val_crops),
                     "train": "at most N per video, one per equal stretch of its timeline, "
                              "redrawn every epoch", "val": "one fixed draw (each stretch's "
                              "middle crop)"},
        "training": {"precision": precision, "saved_dtype": "float32", "strategy": kind,
                     "replicas": replicas, "global_batch": cfg.batch_size * replicas,
                     "epochs_run": len(state.history), "best_epoch": state.best_epoch,
                     "phases": run_phases, "resumed": resumed, "history": state.history},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dfpipe_version": __version__,
    }


def config_fields() -> dict[str, Any]:
    """Each TrainConfig option and its default, so the CLI shows the same defaults."""
    return {f.name: f.default for f in fields(TrainConfig)}

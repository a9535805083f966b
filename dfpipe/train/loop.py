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

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.atomic import write_json_atomic
from dfpipe.core.cpu import cpu_supports_bf16
from dfpipe.core.files import TRAINING_DONE, TRAINING_LOG
from dfpipe.core.images import feed_size_of
from dfpipe.core.splittable import crop_settings, quality_rules, read_split_report
from dfpipe.core.traininglog import write_training_log
from dfpipe.models.build import (
    backbone_of,
    batchnorm_trainable,
    build_classifier,
    freeze_backbone,
    unfreeze_top,
)
from dfpipe.models.registry import Backbone, check_size, get_backbone
from dfpipe.models.saving import load_model, save_model
from dfpipe.scoring.crops import score_crops
from dfpipe.scoring.judge import crop_order, judge_split
from dfpipe.scoring.operating import choose_operating_point
from dfpipe.scoring.videos import rates_at, score_videos
from dfpipe.train.callbacks import (
    keras_tensorboard,
    learning_rate_to_logs,
    one_epoch,
    pipeline_errors,
    reseed,
)
from dfpipe.train.config import Phase, TrainConfig, phases_of, resolve, run_identity, weights_arg
from dfpipe.train.curves import training_curves
from dfpipe.train.devices import (
    choose_precision,
    gpu_capability,
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
)
from dfpipe.train.metadata import model_metadata, phase_boundary
from dfpipe.train.resume import RESUME_DIR, RunBackup, RunState
from dfpipe.train.sbi.inputs import SBITraining, read_sbi_train, sbi_training
from dfpipe.train.sbi.validation import SBIValidation, sbi_validation

log = logging.getLogger(__name__)

CURVES_PNG = "training_curves.png"


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
    report = read_split_report(cfg.data)
    crop = crop_settings(report)
    feed = feed_size(train_crops, crop)

    import keras

    precision = choose_precision(cfg.precision, gpu_capability(), cpu_supports_bf16())
    tf_config = os.environ.get("TF_CONFIG")
    kind = strategy_kind(gpu_count(), tf_config) if strategy is None else "given"
    strategy = make_strategy(kind) if strategy is None else strategy
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = cfg.batch_size * replicas
    log.info("precision %s (asked: %s); %s strategy, %d replica(s), global batch %d",
             precision, cfg.precision, kind, replicas, global_batch)
    out = Path(cfg.output) if is_chief(tf_config) else Path(tempfile.mkdtemp(prefix="worker-"))
    out.mkdir(parents=True, exist_ok=True)

    backup = RunBackup(out / RESUME_DIR, run_identity(cfg))
    state, resumed = backup.start(cfg.restart)
    sbi = sbi_training(train_crops, cfg.data, out, cfg.sbi_ratio, feed, global_batch, cfg.seed,
                       cfg.augment, cfg.frames_per_video) if cfg.sbi else None
    (out / TRAINING_DONE).unlink(missing_ok=True)  # the monitor reads it as "finished"
    write_training_log(out / TRAINING_LOG, state.history)  # a resumed log: committed epochs only
    keras.utils.set_random_seed(cfg.seed)
    sbi_val = sbi_validation(val_crops, cfg.data, out, feed, cfg.seed) if cfg.sbi_val else None
    if sbi_val is not None:
        val_ds = sbi_val.dataset(global_batch)
        val_ids, val_labels, val_order = sbi_val.video_ids, sbi_val.labels, sbi_val.order
    else:
        val_ds = make_dataset(val_crops, feed, global_batch, training=False)
        val_ids, val_labels = [c.video_id for c in val_crops], [c.label for c in val_crops]
        val_order = [crop_order(c) for c in val_crops]
    run = _Run(cfg, spec, train_crops, val_ds, feed, global_batch, out, backup, verbose, sbi,
               strategy if kind == "multi_worker" else None)
    if not state.finished:
        with precision_policy(precision), strategy.scope():
            run.fit(state)
    with precision_policy("float32"):
        final = build_classifier(spec, cfg.size, None, cfg.dropout)
        final.load_weights(backup.weights_path(state.best_file or state.weights))
    scores = validation_scores(final, val_ds, cfg.tta)
    point = choose_operating_point(val_ids, val_labels, scores, cfg.aggregate,
                                   "train.py --aggregate", cfg.frames_per_video, val_order)
    point["operating_point"]["tta"] = cfg.tta
    threshold = point["threshold"]
    val_auc = _auc(val_labels, scores)
    meta = model_metadata(cfg, spec, precision, replicas, kind, feed, crop, val_auc,
                          train_crops, val_all, val_crops, state, resumed)
    boundary = phase_boundary(cfg, state)
    meta.update(point, phase_boundary=boundary, quality=quality_rules(report))
    meta["self_blending"] = sbi.settings if sbi else None
    meta["validation"] = sbi_val.settings if sbi_val else {
        "kind": "split", "meaning": "the split's validation videos, real and fake"}
    model_path = out / f"{spec.name}_best.h5"
    save_model(final, model_path, meta)
    meta["operating_point"]["val"] = (
        measure_saved(model_path, val_all, meta, global_batch) if sbi_val is None
        else measure_self_blended(model_path, sbi_val, meta, global_batch))
    save_model(final, model_path, meta)  # the same weights, now with the measured rates
    training_curves(out / TRAINING_LOG, out / CURVES_PNG, fine_tune_epoch=boundary)
    write_json_atomic(out / TRAINING_DONE, {"finished": time.time(),
                                            "epochs": len(state.history),
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
    strategy: Any = None  # a multi-worker strategy: each worker decodes only its own files

    def train_dataset(self, epoch: int) -> Any:
        """The epoch's training batches; across workers, files are sharded before decoding."""
        cfg = self.cfg

        def build(shard: tuple[int, int] | None, batch: int) -> Any:
            return make_dataset(self.train_crops, self.feed, batch, training=True,
                                seed=cfg.seed, augment=cfg.augment, balance=cfg.balance,
                                epoch=epoch, frames_per_video=cfg.frames_per_video,
                                shard=shard)

        if self.sbi:
            return self.sbi.dataset(epoch)
        if self.strategy is None:
            return build(None, self.global_batch)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: build((ctx.num_input_pipelines, ctx.input_pipeline_id),
                              ctx.get_per_replica_batch_size(self.global_batch)))

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
                                 weights_arg(cfg.weights) if fresh else None, cfg.dropout)
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
            reseed(model, cfg.seed, epoch)
            train_ds = self.train_dataset(epoch)
            with pipeline_errors():
                run = model.fit(train_ds, validation_data=self.val_ds, initial_epoch=epoch,
                                epochs=end, verbose=self.verbose, shuffle=False,
                                class_weight=self.class_weight,
                                callbacks=[learning_rate_to_logs(), one_epoch(),
                                           keras_tensorboard(self.out)])
            logs = {k: float(v[-1]) for k, v in run.history.items()}
            is_best = state.record(epoch, logs, cfg.patience, lr_patience, cfg.lr_factor)
            backup.commit(state, model, is_best)
            write_training_log(self.out / TRAINING_LOG, state.history)

    def _compile(self, model: Any, phase: Phase) -> None:
        """Open the phase's layers and compile a fresh AdamW on the phase's schedule."""
        import keras

        cfg = self.cfg
        pretrained = weights_arg(cfg.weights) is not None
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


def validation_scores(model: Any, val_ds: Any, tta: str) -> np.ndarray:
    """P(fake) of every validation crop, in order; ``tta="flip"``: the mean of each crop's and
    its mirror image's, as :func:`dfpipe.scoring.crops.score_crops` gives it."""
    import tensorflow as tf

    scores = model.predict(val_ds, verbose=0).reshape(-1).astype(np.float64)
    if tta == "flip":
        mirrored = val_ds.map(lambda x, y: (tf.reverse(x, axis=[2]), y))
        scores = (scores + model.predict(mirrored, verbose=0).reshape(-1)) / 2.0
    return scores


def measure_saved(model_path: Path, val_crops: Sequence[Any], meta: dict[str, Any],
                  batch_size: int) -> dict[str, Any]:
    """The operating point's rates on the validation videos, measured as evaluate measures
    them: the saved file loaded back, every validation crop read at the feed size, each video
    judged on the operating point's K crops (``evaluate.py --split val`` gives the same)."""
    model, _ = load_model(model_path)
    op = meta["operating_point"]
    _, by_video = judge_split(model, val_crops, op["rule"], op["crops_per_video"],
                              feed_size_of(meta), batch_size, tta=op.get("tta", "none"))
    label_of = {c.video_id: c.label for c in val_crops}
    labels = [label_of[v] for v in by_video]
    rates = rates_at(labels, [s.score for s in by_video.values()], op["threshold"])
    return {"videos": len(by_video), **rates,
            "measured_on": "the saved model, with evaluate's scorer"}


def measure_self_blended(model_path: Path, val: SBIValidation, meta: dict[str, Any],
                         batch_size: int) -> dict[str, Any]:
    """The operating point's rates on the self-blended validation, with the saved model
    (made on the fly, so ``evaluate.py --split val``, which scores the split's real fakes,
    gives other figures: the metadata says so)."""
    model, _ = load_model(model_path)
    op = meta["operating_point"]
    scores = score_crops(model, list(val.images), batch_size, tta=op.get("tta", "none"))
    by_video = score_videos(val.video_ids, val.order, scores, op["rule"], op["crops_per_video"])
    label_of = dict(zip(val.video_ids, val.labels, strict=True))
    rates = rates_at([label_of[v] for v in by_video], [s.score for s in by_video.values()],
                     op["threshold"])
    return {"videos": len(by_video), **rates,
            "measured_on": "the saved model, on the self-blended validation (not the split's "
                           "fakes: evaluate.py --split val measures those instead)"}


def _auc(labels: Sequence[int], scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))

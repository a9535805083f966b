"""The metadata saved with a model: what it is, how it was trained, on what, and the
operating point evaluate and the app judge with (docs/formats.md lists every key)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dfpipe import __version__
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.models.build import batchnorm_trainable
from dfpipe.models.registry import Backbone
from dfpipe.train.config import TrainConfig, phases_of, weights_arg
from dfpipe.train.inputs import epoch_plan, split_counts
from dfpipe.train.resume import RunState


def phase_boundary(cfg: TrainConfig, state: RunState) -> int:
    """Epochs phase 1 (the head warm-up) really ran: early stopping may end it before
    --head-epochs; 0 when there is no head phase."""
    phases = phases_of(cfg)
    if not phases or phases[0].name != "head":
        return 0
    return state.phase_starts[1] if len(state.phase_starts) > 1 else len(state.history)


def model_metadata(cfg: TrainConfig, spec: Backbone, precision: str, replicas: int, kind: str,
                   feed: int, crop: dict[str, Any] | None, val_auc: float,
                   train_crops: Sequence[Any], val_all: Sequence[Any], val_crops: Sequence[Any],
                   state: RunState, resumed: bool) -> dict[str, Any]:
    """Everything but the operating point, which the loop adds once the model is saved."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    pretrained = weights_arg(cfg.weights) is not None
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
            "augment": cfg.augment,
            "backbone_defaults": asdict(spec.training)},
        "preprocessing": {
            "input": "RGB, float, 0..255, any square size (dfpipe.core.images.read_rgb decodes)",
            "resize": f"bilinear (antialiased) to {cfg.size}x{cfg.size}, inside the model",
            "scaling": spec.model.describe_scaling() + ", inside the model",
            "trained_on_size": feed,
        },
        "crop": crop,
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

"""What a training run is: every option, the backbone's defaults filled in, and its phases.

Defaults that depend on the backbone (epochs, learning rates, unfreeze depth, dropout,
weight decay, schedule, batch norm) live in the model registry's ``TrainDefaults``; an
option left as None here takes that default in :func:`resolve`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.models.registry import SCHEDULES, get_backbone
from dfpipe.scoring.crops import TTA_MODES, aggregator
from dfpipe.train.devices import PRECISIONS
from dfpipe.train.inputs import augment_strength

log = logging.getLogger(__name__)


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
    augment: str | float | None = None  # none, light, full or a strength; None: the backbone's
    patience: int = 4
    lr_patience: int = 2
    lr_factor: float = 0.3
    seed: int = 42
    aggregate: str = "mean"
    tta: str = "none"  # test-time augmentation the operating point is chosen (and judged) with
    sbi: bool = False
    sbi_ratio: float = 1.0
    sbi_val: bool = False
    restart: bool = False


@dataclass(frozen=True)
class Phase:
    """One stretch of training with one optimizer: ``head`` (backbone frozen) or
    ``fine_tune`` (the top of the backbone open)."""

    name: str
    epochs: int
    lr: float
    schedule: str  # constant, cosine or plateau


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill the backbone's defaults; training from scratch (weights none) has no head phase."""
    spec = get_backbone(config.backbone)
    d = spec.training
    weights = weights_arg(config.weights)
    for name in ("batch_size", "patience", "lr_patience"):
        if getattr(config, name) < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be at least 1")
    if (config.head_epochs or 0) < 0 or (config.epochs or 0) < 0:
        raise PipelineError("--head-epochs and --epochs cannot be negative")
    if config.frames_per_video < 0:
        raise PipelineError("--frames-per-video cannot be negative (0: every crop)")
    if config.tta not in TTA_MODES:
        raise PipelineError(f"unknown --tta '{config.tta}': use one of {', '.join(TTA_MODES)}")
    if config.precision not in PRECISIONS:
        raise PipelineError(f"unknown precision '{config.precision}': use one of "
                            f"{', '.join(PRECISIONS)}")
    if config.sbi and (config.balance == "sampling" or not 0.0 < config.sbi_ratio <= 1.0):
        raise PipelineError("--sbi needs --sbi-ratio in (0, 1] and --balance weights or none "
                            "(pairs come in whole; balanced sampling does not apply)")
    if config.sbi_val and not config.sbi:
        raise PipelineError("--sbi-val makes validation fakes by self-blending: it goes with "
                            "--sbi")
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
        augment=augment_strength(given(config.augment, d.augment)),
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


def weights_arg(weights: str) -> str | None:
    text = str(weights).strip()
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    return text


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    """The options a resumed run must share with the run it continues (JSON-normalised)."""
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
            if k != "restart"}
    return json.loads(json.dumps(data))


def config_fields() -> dict[str, Any]:
    """Each TrainConfig option and its default, so the CLI shows the same defaults."""
    return {f.name: f.default for f in fields(TrainConfig)}

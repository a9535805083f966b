"""Options take the backbone's defaults; training from scratch has no head phase."""

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models.registry import (
    get_backbone,
)
from dfpipe.train.config import TrainConfig, resolve


def test_resolve_fills_backbone_defaults_and_scratch_has_no_head_phase() -> None:
    cfg = resolve(TrainConfig(backbone="Xception", weights="some/file.h5"))
    assert (cfg.backbone, cfg.size, cfg.lr, cfg.fine_tune_lr, cfg.unfreeze) == (
        "xception", 299, 1e-3, 2e-4, -1)
    assert (cfg.head_epochs, cfg.epochs, cfg.schedule, cfg.freeze_bn, cfg.frames_per_video) == (
        2, 10, "cosine", False, 32)
    assert cfg.weight_decay == get_backbone("xception").training.weight_decay > 0
    assert resolve(TrainConfig(backbone="efficientnetb0")).freeze_bn
    scratch = resolve(TrainConfig(backbone="tiny", weights="None", head_epochs=2, epochs=3))
    assert (scratch.head_epochs, scratch.epochs, scratch.unfreeze, scratch.weights) == (
        0, 3, -1, "none")
    with pytest.raises(PipelineError, match="nothing to train"):
        resolve(TrainConfig(backbone="tiny", weights="none", epochs=0))

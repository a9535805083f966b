"""Options take the backbone's defaults (scratch has no head phase); precision is chosen
and saved right."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models.registry import get_backbone
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


def test_batch_norm_freezing_can_be_switched_both_ways_on_the_command_line() -> None:
    import train as script

    assert script.parse_args(["--freeze-bn"]).freeze_bn is True
    assert script.parse_args(["--no-freeze-bn"]).freeze_bn is False
    assert script.parse_args([]).freeze_bn is None  # the backbone's default
    pretrained = TrainConfig(backbone="efficientnetb0", weights="imagenet")
    assert resolve(pretrained).freeze_bn is True
    assert resolve(replace(pretrained, freeze_bn=False)).freeze_bn is False


def test_mixed_precision_training_saves_a_float32_model_that_scores_as_a_float32_rebuild(
        tmp_path: Path) -> None:
    import keras
    from split_support import write_split

    from dfpipe.core.images import read_rgb
    from dfpipe.core.splittable import load_split
    from dfpipe.models.build import build_classifier
    from dfpipe.models.saving import load_model
    from dfpipe.train.loop import train

    root = write_split(tmp_path / "split", size=32)
    result = train(TrainConfig(data=root, output=tmp_path / "m", backbone="tiny",
                               weights="none", size=32, batch_size=4, epochs=1,
                               precision="mixed_bfloat16"), verbose=0)
    assert result.metadata["training"]["precision"] == "mixed_bfloat16"
    assert result.metadata["training"]["saved_dtype"] == "float32"
    saved, _ = load_model(result.model_path)
    assert all(w.dtype == "float32" for w in saved.weights)
    crops = np.stack([read_rgb(c.path) for c in load_split(root, "val")]).astype("float32")
    scores = saved.predict(crops, verbose=0)
    assert scores.dtype == np.float32
    keras.mixed_precision.set_global_policy("float32")
    rebuilt = build_classifier(get_backbone("tiny"), 32, None, 0.2)
    rebuilt.set_weights(saved.get_weights())
    # tolerance: float32 round-off only, the saved copy holds no bfloat16 arithmetic
    np.testing.assert_allclose(scores, rebuilt.predict(crops, verbose=0), atol=1e-6)

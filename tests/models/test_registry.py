"""Backbone registry and detector: preprocessing inside the model, weights, freezing."""

import json
from dataclasses import asdict

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models import registry as models
from dfpipe.models.build import (
    build_classifier,
)
from dfpipe.models.registry import BACKBONES, get_backbone

TINY = get_backbone("tiny")


def test_registry_entries_are_consistent() -> None:
    assert "xception" in BACKBONES and "efficientnetb0" in BACKBONES
    for spec in BACKBONES.values():
        assert spec.min_size <= spec.input_size
        assert 0 < spec.training.lr <= spec.training.head_lr
        assert 0 <= spec.training.dropout < 1 and spec.training.weight_decay >= 0
        assert spec.training.schedule in models.SCHEDULES
        assert len(spec.model.mean) == len(spec.model.std) == 3
        model_config, train_defaults = asdict(spec.model), asdict(spec.training)
        assert "lr" not in model_config and "mean" not in train_defaults
        json.dumps([model_config, train_defaults])  # plain data, for the saved metadata
    assert get_backbone("Xception") is BACKBONES["xception"]
    assert BACKBONES["xception"].input_size == 299 and BACKBONES["xception"].min_size == 71
    with pytest.raises(PipelineError, match="unknown backbone 'resnet'.*xception"):
        get_backbone("resnet")


@pytest.mark.parametrize("name,size", [("tiny", 8), ("xception", 70)])
def test_size_below_minimum_is_one_clear_line(name: str, size: int) -> None:
    spec = get_backbone(name)
    with pytest.raises(PipelineError, match=f"below {name}'s minimum of {spec.min_size}") as err:
        build_classifier(spec, size, None, 0.1)
    assert "\n" not in str(err.value)


def test_xception_default_recipe_is_deepfakebench_after_a_head_warm_up() -> None:
    recipe = get_backbone("xception").training
    assert 1 <= recipe.head_epochs <= 3
    assert (recipe.lr, recipe.unfreeze, recipe.schedule, recipe.freeze_bn) == (
        2e-4, -1, "cosine", False)
    assert recipe.weight_decay > 0

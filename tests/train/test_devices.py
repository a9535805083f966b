"""Precision and strategy choice (dfpipe.train.devices): auto must pick right on every machine."""

from __future__ import annotations

import json

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.train.devices import choose_precision, is_chief, strategy_kind


@pytest.mark.parametrize("requested,gpu,bf16,expected", [
    ("auto", (9, 0), False, "mixed_bfloat16"),  # H100 / H200
    ("auto", (8, 0), True, "mixed_bfloat16"),  # A100
    ("auto", (7, 5), True, "mixed_float16"),  # T4: no bf16 tensor cores
    ("auto", (6, 1), False, "mixed_float16"),
    ("auto", None, True, "mixed_bfloat16"),  # CPU with AVX-512 BF16 or AMX
    ("auto", None, False, "float32"),
    ("float32", (9, 0), True, "float32"),
    ("mixed_bfloat16", None, False, "mixed_bfloat16"),
])
def test_auto_precision(requested: str, gpu: tuple[int, int] | None, bf16: bool,
                        expected: str) -> None:
    assert choose_precision(requested, gpu, bf16) == expected


def test_bad_precision() -> None:
    with pytest.raises(PipelineError, match="unknown precision 'half'"):
        choose_precision("half", None, False)


def test_distribution_choice() -> None:
    assert strategy_kind(0, None) == "default"
    assert strategy_kind(1, None) == "default"
    assert strategy_kind(4, None) == "mirrored"
    cluster = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    assert strategy_kind(1, json.dumps(cluster)) == "multi_worker"
    assert not is_chief(json.dumps(cluster))
    cluster["task"]["index"] = 0
    assert is_chief(json.dumps(cluster)) and is_chief(None)
    with pytest.raises(PipelineError, match="TF_CONFIG"):
        strategy_kind(0, "{not json")

"""A loaded classifier is checked against its metadata."""

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.models.build import (
    build_classifier,
)
from dfpipe.models.registry import get_backbone
from dfpipe.models.saving import check_classifier

TINY = get_backbone("tiny")


def test_check_detector_compares_model_and_metadata() -> None:
    model = build_classifier(TINY, 32, None, 0.0)
    check_classifier(model, {"input_size": 32, "backbone": "tiny"})
    with pytest.raises(PipelineError, match="resizes to 32x32 but its metadata says input_size 64"):
        check_classifier(model, {"input_size": 64})

"""Fixtures shared by the web app's tests: a numbered clip, and apps shut down after a test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from app_support import StandInAnalyzer
from conftest import write_numbered_video

from dfpipe.serve.web import create_app


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_numbered_video(tmp_path_factory.mktemp("media") / "clip.mp4", 9)


@pytest.fixture
def apps(tmp_path):
    """``apps(analyzer=None, name="instance", model_load_s=None, **config)`` makes an app on a
    stand-in analyzer (no model, no heatmaps, no warm-up); every app made stops at the end."""
    made = []

    def make(analyzer: Any = None, name: str = "instance", model_load_s: float | None = None,
             **config: Any):
        app = create_app({"instance": tmp_path / name, "warm_up": False, "gradcam": False,
                          **config}, analyzer or StandInAnalyzer(), model_load_s=model_load_s)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["dfpipe"].shutdown()

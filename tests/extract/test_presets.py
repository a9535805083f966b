"""--preset dfb / sbi: the published protocols' sampling and crops in one flag, recorded."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REPO, write_numbered_video
from layout_support import CentreDetector

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import read_manifests
from dfpipe.extract import faces as facelib
from dfpipe.extract.presets import preset_values
from dfpipe.extract.run import Settings, run


def _cli():
    spec = importlib.util.spec_from_file_location("preprocess_cli", REPO / "preprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, frames, margin, size", [("dfb", 32, 1.3, 256),
                                                         ("sbi", 32, 1.25, 380)])
def test_presets_set_the_published_values(name, frames, margin, size):
    given = {"every": None, "frames": None, "margin": None, "size": None}
    assert preset_values(name, given) == {"frames": frames, "margin": margin, "size": size,
                                          "preset": name}
    assert preset_values(name, {**given, "size": size})["size"] == size


def test_a_contradicting_option_is_refused():
    with pytest.raises(PipelineError, match="--preset dfb sets --size 256, not 299"):
        preset_values("dfb", {"size": 299})
    with pytest.raises(PipelineError, match="leave out --every"):
        preset_values("sbi", {"every": 10})
    assert preset_values(None, {"every": None, "size": 64}) == {"size": 64}


def test_cli_preset_option_and_its_help(capsys):
    cli = _cli()
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "dfb = DeepfakeBench (32 evenly spaced frames, margin 1.3, 256 px)" in shown
    assert cli.parse_args(["--preset", "dfb"]).preset == "dfb"
    assert cli.parse_args([]).preset is None
    with pytest.raises(SystemExit):
        cli.parse_args(["--preset", "nope"])


def test_manifest_records_the_preset(tmp_path, monkeypatch):
    monkeypatch.setitem(facelib.DETECTORS, "centre",
                        facelib.DetectorSpec(CentreDetector, {"min_confidence": 0.5}, 4))
    write_numbered_video(tmp_path / "data/real/000.mp4", 40, size=(96, 96))
    chosen = preset_values("dfb", {"every": None, "frames": None, "margin": None, "size": None})
    run(tmp_path / "data", tmp_path / "out", Settings(detector="centre", **chosen))
    rec = read_manifests(tmp_path / "out")[0]
    assert rec["settings"]["preset"] == "dfb"
    assert (rec["settings"]["frames"], rec["settings"]["size"]) == (32, 256)
    assert rec["frames_sampled"] == 32 and rec["settings"]["every"] is None
    plain = Settings(detector="centre").resolved().record()
    assert "preset" not in plain  # records made without a preset keep their old keys

import json

import pytest

from dfpipe.errors import PipelineError
from dfpipe.groups import find_group, read_labels_csv


def test_ffpp_fake_group_is_target(tmp_path):
    assert find_group(tmp_path / "519_515.mp4", "fake") == ("519", "ffpp_name")
    assert find_group(tmp_path / "519.mp4", "real") == ("519", "self")


def test_dfdc_metadata_original(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "FAKE", "original": "bbb.mp4", "split": "train"},
        "bbb.mp4": {"label": "REAL", "split": "train"},
    }))
    assert find_group(tmp_path / "aaa.mp4", "fake") == ("bbb", "dfdc_metadata")
    assert find_group(tmp_path / "bbb.mp4", "real") == ("bbb", "dfdc_metadata")


def test_labels_csv_wins_and_accepts_source_video(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,source_video\nfake/x.mp4,fake,y.mp4\n")
    labels = read_labels_csv(csv_path, tmp_path)
    assert labels["fake/x.mp4"].group == "y"
    assert find_group(tmp_path / "fake/x.mp4", "fake", labels, "fake/x.mp4") == ("y",
                                                                                 "labels_csv")


def test_labels_csv_rejects_unknown_label(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\nfake/x.mp4,maybe\n")
    with pytest.raises(PipelineError, match="not real or fake"):
        read_labels_csv(csv_path, tmp_path)

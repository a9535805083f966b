"""No silent collapse: chained identities stop the split; --group-by target counts its leak."""

from __future__ import annotations

import json

import numpy as np
import pytest
from split_support import add_manifest_video

from dfpipe.core.errors import PipelineError
from dfpipe.extract.identities import name_identities
from dfpipe.split.grouping import check_collapse
from dfpipe.split.run import run_split

PEOPLE = 10


def celebdf_chain(root):
    """Celeb-DF-style names where every fake's source is the next person: by identity, all
    ten people chain into one group."""
    for p in range(PEOPLE):
        for k in range(2):
            rel = f"Celeb-real/id{p}_{k:04d}.mp4"
            add_manifest_video(root, rel, "real", [f"id{p}"], "id0", "celebdf_name")
        for k in range(3):
            rel = f"Celeb-synthesis/id{p}_id{(p + 1) % PEOPLE}_{k:04d}.mp4"
            ids, _ = name_identities(rel.split("/")[1][:-4], "fake")
            add_manifest_video(root, rel, "fake", ids, "id0", "celebdf_name")
    return root


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return celebdf_chain(tmp_path_factory.mktemp("celebdf") / "pre")


def test_chained_identities_stop_the_split_with_the_ways_out(chain, tmp_path):
    with pytest.raises(PipelineError) as err:
        run_split(chain, tmp_path / "out", workers=1)
    message = str(err.value)
    assert "\n" not in message
    assert "holds 20 of the 20 real videos" in message
    assert "--protocol" in message and "--group-by target" in message
    assert not (tmp_path / "out").exists()


def test_group_by_target_splits_and_reports_the_sources_crossing(chain, tmp_path):
    out = tmp_path / "out"
    report = run_split(chain, out, workers=1, group_by="target", seed=3)
    assert report["group_by"] == "target"
    splits = report["splits"]
    assert all(splits[s]["real_videos"] and splits[s]["fake_videos"]
               for s in ("train", "val", "test"))
    leak = report["target_leak"]
    assert leak["source_identities"] == PEOPLE
    assert 0 < leak["source_identities_crossing"] <= PEOPLE
    # recount from split.csv: a fake's source person sits in another split than the fake
    import csv
    with open(out / "split.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    split_of_person = {}
    for row in rows:
        if row["label"] == "real":
            split_of_person[row["video_id"].split("_")[0]] = row["split"]
    crossing = set()
    for row in rows:
        if row["label"] == "fake":
            target, source = row["video_id"].split("_")[:2]
            assert split_of_person[target] == row["split"]
            if split_of_person[source] != row["split"]:
                crossing.add(source)
    assert leak["source_identities_crossing"] == len(crossing)
    saved = json.loads((out / "split_report.json").read_text())
    assert saved["target_leak"] == leak
    assert "source identities cross splits" in (out / "split_report.txt").read_text()


def test_collapse_check_counts_videos_per_class():
    sizes = {"a": np.array([0, 0, 3, 1]), "b": np.array([0, 0, 2, 1]),
             "c": np.array([0, 0, 1, 3])}
    with pytest.raises(PipelineError, match="holds 3 of the 5 fake videos"):
        check_collapse(sizes)
    sizes["c"] = np.array([0, 0, 1, 2])
    check_collapse(sizes)  # 3 of 6 real is exactly half: allowed


def test_split_cli_takes_group_by_target(chain, tmp_path, capsys):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("split_cli", REPO / "split.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--input", str(chain), "--output", str(tmp_path / "o"), "--group-by",
                     "target", "--workers", "1"]) == 0
    assert "source identities cross splits" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.parse_args(["--group-by", "source"])


def test_group_by_target_is_refused_for_a_crops_folder(tmp_path):
    def loader(_):
        raise AssertionError("the crops must not be read")

    with pytest.raises(PipelineError, match="--group-column"):
        run_split(tmp_path, tmp_path / "out", loader=loader, group_by="target")
    with pytest.raises(PipelineError, match="--group-by must be one of identity, target"):
        run_split(tmp_path, tmp_path / "out", group_by="source")

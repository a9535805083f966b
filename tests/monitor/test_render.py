"""The text, rich and JSON views show the snapshot's figures."""

from __future__ import annotations

import io
import json

import pytest
from monitor_support import NOW, known_run, record, write_run
from rich.console import Console

import monitor
from dfpipe.core.manifest import append_record, manifest_name
from dfpipe.monitor.render import format_duration, render_rich
from dfpipe.monitor.snapshot import (
    take_snapshot,
)


def test_rich_rendering_shows_every_shard(tmp_path):
    for k in (0, 1):
        append_record(tmp_path / manifest_name((k, 2)), record(f"v{k}", finished=NOW - 5))
        write_run(tmp_path, total=5, shard=(k, 2))
    console = Console(file=io.StringIO(), width=200)
    console.print(render_rich(take_snapshot(tmp_path, now=NOW)))
    rows = {line.split()[0]: line.split() for line in console.file.getvalue().splitlines()
            if line.strip()}
    assert {"2/10", "20.0%"} <= set(rows["all"])
    assert {"1/5", "20.0%"} <= set(rows["0/2"]) and {"1/5", "20.0%"} <= set(rows["1/2"])


@pytest.mark.parametrize("seconds,text", [(None, "?"), (5, "5s"), (125, "2m05s"),
                                          (3 * 3600 + 7 * 60, "3h07m"), (90000, "1d01h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_json_form_carries_the_snapshot_figures(tmp_path, capsys):
    known_run(tmp_path)
    assert monitor.main([str(tmp_path), "--once", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "preprocess" and data["done"] is False
    overall = data["overall"]
    assert (overall["done"], overall["total"], overall["faces_saved"]) == (10, 20, 21)
    assert overall["reasons"]["error"] == {"cannot decode": 1}
    assert isinstance(overall["videos_per_min_overall"], float)

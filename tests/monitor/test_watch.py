"""The watch loop waits for a folder, follows the run and stops when it is done."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from monitor_support import LOG, NOW, known_run, record, write_log, write_run

import monitor
from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import append_record, manifest_name
from dfpipe.monitor.snapshot import (
    WaitingSnapshot,
    take_snapshot,
)
from dfpipe.monitor.watch import watch


def test_watch_waits_for_the_folder_and_exits_when_the_run_is_done(tmp_path):
    folder = tmp_path / "preprocessed"
    polls = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            folder.mkdir()
            append_record(folder / manifest_name(None), record("v0", finished=NOW - 1))
            write_run(folder, total=2)
        elif len(polls) == 2:
            append_record(folder / manifest_name(None), record("v1", finished=NOW))
            write_run(folder, total=2, finished=NOW)
        else:
            raise AssertionError("kept polling after the run finished")

    out = io.StringIO()
    code = watch(folder, interval=3, out=out, clock=lambda: NOW, sleep=fake_sleep)
    lines = out.getvalue()
    assert code == 0 and polls == [3, 3]
    assert "waiting for" in lines and "1/2 videos" in lines and ": done" in lines


def test_live_display_renders_and_exits_when_done(tmp_path):
    known_run(tmp_path)
    write_run(tmp_path, total=20, finished=NOW)
    out = io.StringIO()
    assert watch(tmp_path, out=out, live=True, clock=lambda: NOW, sleep=None) == 0
    assert "done" in out.getvalue() and "10/20" in out.getvalue()


def test_json_lines_while_watching_until_done(tmp_path):
    known_run(tmp_path)
    write_run(tmp_path, total=20, finished=NOW)
    out = io.StringIO()
    assert watch(tmp_path, as_json=True, out=out, clock=lambda: NOW, sleep=None) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 1 and rows[0]["done"] is True and rows[0]["overall"]["eta_s"] == 0.0


def test_training_done_marker_ends_the_watch(tmp_path):
    write_log(tmp_path, LOG)
    (tmp_path / "training_done.json").write_text('{"epochs": 3}', encoding="utf-8")
    out = io.StringIO()
    assert watch(tmp_path, out=out, clock=lambda: NOW, sleep=None) == 0
    assert ": done (training)" in out.getvalue()


def test_script_prints_plain_json_when_not_a_terminal(tmp_path):
    known_run(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(REPO / "monitor.py"), str(tmp_path), "--once",
                          "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["overall"]["done"] == 10


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="--interval"):
        monitor.main([str(tmp_path), "--interval", "0"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PipelineError, match="is a file"):
        monitor.main([str(tmp_path / "file.txt")])


def test_missing_and_empty_folders_wait(tmp_path, capsys):
    missing = tmp_path / "preprocessed"
    snap = take_snapshot(missing, now=NOW)
    assert isinstance(snap, WaitingSnapshot) and snap.reason == "folder missing"
    assert monitor.main([str(missing), "--once"]) == 1
    assert f"waiting for {missing}" in capsys.readouterr().out
    terminal = io.StringIO()
    assert watch(missing, once=True, live=True, out=terminal) == 1
    assert f"waiting for {missing}" in " ".join(terminal.getvalue().split())
    missing.mkdir()
    assert take_snapshot(missing, now=NOW).reason == "no manifest or training log yet"

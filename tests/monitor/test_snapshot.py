"""monitor.py and dfpipe.monitor.snapshot: snapshots of preprocessing and training runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from rich.console import Console

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import append_record, manifest_name, run_file_name
from dfpipe.monitor.progress import videos_from_records
from dfpipe.monitor.render import format_duration, render_rich, render_text
from dfpipe.monitor.snapshot import (
    PreprocessSnapshot,
    TrainingSnapshot,
    WaitingSnapshot,
    take_snapshot,
)
from dfpipe.monitor.tail import ManifestTail
from dfpipe.monitor.watch import watch

sys.path.insert(0, str(REPO))

import monitor  # noqa: E402

NOW = 1_000_000.0
STARTED = NOW - 600.0


def record(vid: str, status: str = "ok", faces: int = 1, frames: int = 30,
           seconds: float = 5.0, finished: float | None = None, message: str = "") -> dict:
    """A manifest record with the fields the monitor reads (plus a few it ignores)."""
    rec = {"video_id": vid, "label": "real", "status": status, "message": message,
           "faces_saved": faces, "frames_sampled": frames, "seconds": seconds,
           "crops": [], "relpath": f"real/{vid}.mp4"}
    if finished is not None:
        rec["finished"] = finished
    return rec


def write_run(folder: Path, total: int, shard: tuple[int, int] | None = None,
              started: float = STARTED, finished: float | None = None) -> None:
    data = {"total": total, "shard": list(shard) if shard else None, "started": started,
            "finished": finished, "detector": "mtcnn", "settings": {}}
    (folder / run_file_name(shard)).write_text(json.dumps(data), encoding="utf-8")


def known_run(folder: Path) -> None:
    """10 of 20 videos done in the 600 s since start, 6 of them in the last 300 s."""
    offsets = [50, 100, 150, 200, 320, 380, 440, 500, 560, 590]
    kinds = (["ok"] * 6 + ["no_face"] * 3 + ["error"])
    faces = [3, 5, 2, 4, 6, 1, 0, 0, 0, 0]
    messages = [""] * 6 + ["no face found", "no face found", "video too dark", "cannot decode"]
    order = [0, 6, 1, 2, 7, 3, 8, 4, 9, 5]  # statuses interleaved in time
    path = folder / manifest_name(None)
    for slot, i in enumerate(order):
        append_record(path, record(f"v{i:02d}", kinds[i], faces[i], 30, 5.0,
                                   STARTED + offsets[slot], messages[i]))
    write_run(folder, total=20)


def test_snapshot_figures_match_a_manifest_built_to_known_counts(tmp_path):
    known_run(tmp_path)
    snap = take_snapshot(tmp_path, now=NOW, window_s=300)
    assert isinstance(snap, PreprocessSnapshot)
    p = snap.overall
    assert (p.done, p.total, p.ok, p.no_face, p.error) == (10, 20, 6, 3, 1)
    assert p.faces_saved == 21 and p.frames_sampled == 300
    assert p.reasons == {"no_face": {"no face found": 2, "video too dark": 1},
                         "error": {"cannot decode": 1}}
    assert p.videos_per_min_recent == pytest.approx(6 / 5)      # 6 videos in the last 5 min
    assert p.videos_per_min_overall == pytest.approx(10 / 10)   # 10 videos in 10 min
    assert p.frames_per_s_recent == pytest.approx(180 / 300)
    assert p.frames_per_s_overall == pytest.approx(300 / 600)
    assert p.eta_s == pytest.approx(10 / 1.2 * 60)              # 10 left at the recent rate
    assert p.last_video_at == STARTED + 590
    assert not snap.done and snap.shards == [] and snap.shards_expected == 1
    text = render_text(snap)
    assert "10/20 videos (50.0%)" in text and "faces 21" in text and "no face 3" in text
    assert "2 no face found" in text and "1 cannot decode" in text and "left 8m20s" in text


def test_resumed_run_counts_old_records_as_done_but_not_in_its_speed(tmp_path):
    path = tmp_path / manifest_name(None)
    append_record(path, record("old1", finished=STARTED - 5000))
    append_record(path, record("old2", finished=STARTED - 4000))
    append_record(path, record("new1", finished=NOW - 60))
    write_run(tmp_path, total=4)
    p = take_snapshot(tmp_path, now=NOW, window_s=300).overall
    assert p.done == 3
    assert p.videos_per_min_overall == pytest.approx(1 / 10)
    assert p.videos_per_min_recent == pytest.approx(1 / 5)


def test_the_latest_record_of_a_video_wins(tmp_path):
    path = tmp_path / manifest_name(None)
    append_record(path, record("a", "error", 0, finished=NOW - 100, message="cannot decode"))
    append_record(path, record("a", "ok", 2, finished=NOW - 50))
    p = take_snapshot(tmp_path, now=NOW).overall
    assert (p.done, p.ok, p.error, p.faces_saved, p.reasons) == (1, 1, 0, 2, {})


def test_reasons_group_videos_whatever_their_path_and_frame_count(tmp_path):
    path = tmp_path / manifest_name(None)
    for vid, frames in (("a", 32), ("b", 17)):
        append_record(path, record(vid, "no_face", 0, frames, finished=NOW, message=(
            f"no face with confidence >= 0.9 in {frames} sampled frames")))
    missing = record("c", "error", 0, 0, finished=NOW, message="file not found: /d/real/c.mp4")
    append_record(path, {**missing, "source": "/d/real/c.mp4"})
    reasons = take_snapshot(tmp_path, now=NOW).overall.reasons
    assert reasons == {"no_face": {"no face with confidence >= 0.9 in N sampled frames": 2},
                       "error": {"file not found: <video>": 1}}


def test_records_without_finished_are_timed_back_from_the_manifest_mtime():
    records = [record("a", seconds=10), record("b", seconds=20), record("c", seconds=30)]
    videos = videos_from_records(records, mtime=NOW)
    assert [v.finished for v in videos] == [NOW - 50, NOW - 30, NOW]


def test_no_run_file_shows_counts_without_total_or_time_left(tmp_path):
    path = tmp_path / manifest_name(None)
    for i in range(4):
        append_record(path, record(f"v{i}", seconds=10, finished=NOW - 30 + 10 * i))
    snap = take_snapshot(tmp_path, now=NOW)
    p = snap.overall
    assert (p.done, p.total, p.eta_s, snap.done) == (4, None, None, False)
    assert p.videos_per_min_overall == pytest.approx(4 / 40 * 60)  # first started at NOW-40
    assert "4 videos," in render_text(snap)


def test_a_half_written_last_line_is_ignored_until_complete(tmp_path):
    path = tmp_path / manifest_name(None)
    for i in range(3):
        append_record(path, record(f"v{i}", finished=NOW - 10))
    line = json.dumps(record("v3", finished=NOW - 1)) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:25])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 3
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[25:])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 4


def test_polls_sharing_a_tail_read_only_new_lines_and_restart_on_a_new_file(tmp_path):
    path = tmp_path / manifest_name(None)
    tail = ManifestTail()
    append_record(path, record("v0", finished=NOW - 10))
    line = json.dumps(record("v1", status="no_face", finished=NOW)) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:30])
    assert take_snapshot(tmp_path, now=NOW, tail=tail).overall.done == 1
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[30:])
    append_record(path, record("v0", status="error", finished=NOW))   # v0 again: latest wins
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.ok, p.no_face, p.error) == (2, 0, 1, 1)
    tmp = path.with_name("new.tmp")                                    # a fresh run replaces it
    tmp.write_text(json.dumps(record("w0", finished=NOW)) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.ok) == (1, 1)
    with open(path, "r+", encoding="utf-8") as fh:          # rewritten in place, same inode
        fh.write("\n".join(json.dumps(record(f"x{i}", "error", finished=NOW)) for i in range(3)))
        fh.write("\n")
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.error) == (3, 3)


def test_a_last_line_cut_inside_a_multibyte_character_does_not_crash(tmp_path):
    path = tmp_path / manifest_name(None)
    append_record(path, record("v0", finished=NOW - 10))
    torn = (json.dumps(record("видео", finished=NOW), ensure_ascii=False)).encode()
    cut = torn.index("видео".encode()) + 1                      # inside the first 2-byte char
    with open(path, "ab") as fh:
        fh.write(torn[:cut])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 1


def test_several_shards_are_combined_with_a_line_each(tmp_path):
    a, b = (0, 2), (1, 2)
    for i in range(3):
        append_record(tmp_path / manifest_name(a),
                      record(f"a{i}", faces=2, frames=10, finished=NOW - 240 + 60 * i))
    append_record(tmp_path / manifest_name(b),
                  record("b0", "no_face", 0, frames=10, finished=NOW - 30, message="no face found"))
    write_run(tmp_path, total=6, shard=a)
    write_run(tmp_path, total=4, shard=b)
    snap = take_snapshot(tmp_path, now=NOW, window_s=300)
    assert [s.name for s in snap.shards] == ["shard-0-of-2", "shard-1-of-2"]
    assert [s.done for s in snap.shards] == [3, 1]
    p = snap.overall
    assert (p.done, p.total, p.ok, p.no_face, p.faces_saved) == (4, 10, 3, 1, 6)
    assert p.videos_per_min_recent == pytest.approx(4 / 5)   # both shards' last 5 minutes
    # each shard must finish its own share: the slower one sets the time left
    assert snap.shards[0].eta_s == pytest.approx(3 / (3 / 5) * 60)
    assert snap.shards[1].eta_s == pytest.approx(3 / (1 / 5) * 60)
    assert p.eta_s == pytest.approx(max(s.eta_s for s in snap.shards))
    text = render_text(snap)
    assert "2/2 shards reporting" in text
    assert "shard-0-of-2: 3/6 videos" in text and "shard-1-of-2: 1/4 videos" in text
    assert not snap.done
    write_run(tmp_path, total=6, shard=a, finished=NOW)
    assert not take_snapshot(tmp_path, now=NOW).done          # shard 2 still running
    write_run(tmp_path, total=4, shard=b, finished=NOW)
    assert take_snapshot(tmp_path, now=NOW).done


def test_a_finished_shard_alone_is_not_the_whole_run(tmp_path):
    append_record(tmp_path / manifest_name((1, 3)), record("a", finished=NOW - 5))
    write_run(tmp_path, total=1, shard=(1, 3), finished=NOW)
    snap = take_snapshot(tmp_path, now=NOW)
    assert (snap.shards_seen, snap.shards_expected, snap.done) == (1, 3, False)
    assert (snap.overall.done, snap.overall.total, snap.overall.eta_s) == (1, None, None)
    assert [(s.name, s.done, s.total, s.complete) for s in snap.shards] == [
        ("shard-1-of-3", 1, 1, True)]
    text = render_text(snap)
    assert "1/3 shards reporting" in text and "shard-1-of-3: 1/1 videos" in text


def test_a_run_file_before_any_video_shows_zero_of_total(tmp_path):
    write_run(tmp_path, total=7, started=NOW - 20)
    snap = take_snapshot(tmp_path, now=NOW)
    assert isinstance(snap, PreprocessSnapshot)
    assert (snap.overall.done, snap.overall.total, snap.overall.videos_per_min_overall) == (
        0, 7, 0.0)
    assert snap.overall.eta_s is None


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


def test_json_form_carries_the_snapshot_figures(tmp_path, capsys):
    known_run(tmp_path)
    assert monitor.main([str(tmp_path), "--once", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "preprocess" and data["done"] is False
    overall = data["overall"]
    assert (overall["done"], overall["total"], overall["faces_saved"]) == (10, 20, 21)
    assert overall["reasons"]["error"] == {"cannot decode": 1}
    assert isinstance(overall["videos_per_min_overall"], float)


def test_json_lines_while_watching_until_done(tmp_path):
    known_run(tmp_path)
    write_run(tmp_path, total=20, finished=NOW)
    out = io.StringIO()
    assert watch(tmp_path, as_json=True, out=out, clock=lambda: NOW, sleep=None) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 1 and rows[0]["done"] is True and rows[0]["overall"]["eta_s"] == 0.0


def test_script_prints_plain_json_when_not_a_terminal(tmp_path):
    known_run(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(REPO / "monitor.py"), str(tmp_path), "--once",
                          "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["overall"]["done"] == 10


def write_log(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_log.csv").write_text(text, encoding="utf-8")


LOG = ("epoch,auc,loss,val_auc,val_loss,learning_rate\n"
       "0,0.70,0.65,0.72,0.60,0.001\n"
       "1,0.80,0.50,0.85,0.45,0.001\n"
       "2,0.86,0.40,0.81,0.47,0.0005\n")


def test_training_snapshot_shows_latest_and_best_epoch(tmp_path):
    write_log(tmp_path, LOG + "3,0.9")                      # epoch 4 is being written
    snap = take_snapshot(tmp_path, now=NOW)
    assert isinstance(snap, TrainingSnapshot)
    assert snap.epochs_completed == 3 and not snap.done
    assert snap.latest["val_auc"] == 0.81 and snap.latest["learning_rate"] == 0.0005
    assert (snap.best_metric, snap.best_epoch, snap.best["val_auc"]) == ("val_auc", 2, 0.85)
    text = render_text(snap)
    assert "auc: train 0.8600, val 0.8100" in text and "best val_auc 0.8500 at epoch 2" in text
    console = Console(file=io.StringIO(), width=120)
    console.print(render_rich(snap))
    assert "best epoch 2" in console.file.getvalue()


def test_training_best_falls_back_to_lowest_val_loss_and_tolerates_na(tmp_path):
    write_log(tmp_path, "epoch,loss,val_loss,lr\n0,0.7,0.66,0.01\n1,0.6,NA,0.01\n"
                        "2,0.5,0.61,0.01\n3,0.4,0.63,0.01\n")
    snap = take_snapshot(tmp_path, now=NOW)
    assert (snap.best_metric, snap.best_epoch, snap.best["val_loss"]) == ("val_loss", 3, 0.61)
    assert snap.epochs_completed == 4 and snap.latest["val_loss"] == 0.63


def test_training_done_marker_ends_the_watch(tmp_path):
    write_log(tmp_path, LOG)
    (tmp_path / "training_done.json").write_text('{"epochs": 3}', encoding="utf-8")
    out = io.StringIO()
    assert watch(tmp_path, out=out, clock=lambda: NOW, sleep=None) == 0
    assert ": done (training)" in out.getvalue()


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(PipelineError, match="--interval"):
        monitor.main([str(tmp_path), "--interval", "0"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PipelineError, match="is a file"):
        monitor.main([str(tmp_path / "file.txt")])


@pytest.mark.parametrize("seconds,text", [(None, "?"), (5, "5s"), (125, "2m05s"),
                                          (3 * 3600 + 7 * 60, "3h07m"), (90000, "1d01h")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text

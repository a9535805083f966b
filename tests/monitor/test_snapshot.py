"""monitor.py and dfpipe.monitor.snapshot: snapshots of preprocessing and training runs."""

from __future__ import annotations

import io

import pytest
from monitor_support import LOG, NOW, STARTED, known_run, record, write_log, write_run
from rich.console import Console

from dfpipe.core.manifest import append_record, manifest_name
from dfpipe.monitor.progress import videos_from_records
from dfpipe.monitor.render import render_rich, render_text
from dfpipe.monitor.snapshot import (
    PreprocessSnapshot,
    TrainingSnapshot,
    take_snapshot,
)


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

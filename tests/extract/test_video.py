from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import frame_level, write_numbered_video

from dfpipe.extract.video import (
    VideoError,
    VideoInfo,
    iter_sampled_frames,
    open_video,
    sample_indices,
)


def test_every_nth_indices():
    assert sample_indices(50, every=15) == [0, 15, 30, 45]
    assert sample_indices(0, every=15) == []


def test_k_evenly_spaced_indices_are_slice_centres():
    assert sample_indices(100, frames=4) == [12, 37, 62, 87]
    assert sample_indices(3, frames=10) == [0, 1, 2]


def test_reads_exactly_the_sampled_frames(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    got = [(i, frame_level(f)) for i, f in iter_sampled_frames(video, every=15)]
    assert [i for i, _ in got] == [0, 15, 30]
    assert [lvl for _, lvl in got] == [0, 15, 30]


def test_k_frames_and_true_count(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    _, info = open_video(video)
    got = [(i, frame_level(f)) for i, f in iter_sampled_frames(video, frames=4, info=info)]
    assert [i for i, _ in got] == [5, 15, 25, 35]
    assert [lvl for _, lvl in got] == [5, 15, 25, 35]
    assert info.frames_read == 40


def test_wrong_container_count_is_corrected(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 20)
    lying = VideoInfo(fps=10, reported_frames=200, width=64, height=48)
    got = [i for i, _ in iter_sampled_frames(video, frames=4, info=lying)]
    assert got == sample_indices(20, frames=4)
    missing = VideoInfo(fps=10, reported_frames=0, width=64, height=48)
    assert [i for i, _ in iter_sampled_frames(video, frames=4, info=missing)] == got


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_non_video_raises_video_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoError):
        list(iter_sampled_frames(bad, every=5))


def test_truncated_mp4_without_its_index_is_a_clear_error(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 3])  # the moov atom is lost
    with pytest.raises(VideoError, match="cannot open as video"):
        list(iter_sampled_frames(cut, every=1))


def test_truncated_avi_gives_the_frames_before_the_cut_and_only_those(tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(60):
        writer.write(np.full((48, 64, 3), 6 * i if 6 * i < 256 else 255, np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    frames = list(iter_sampled_frames(cut, every=1))
    whole = dict(iter_sampled_frames(video, every=1))
    assert 1 < len(frames) < 60 and [i for i, _ in frames] == list(range(len(frames)))
    # every frame but the one the cut went through is the same as in the whole file
    assert all(np.array_equal(frame, whole[i]) for i, frame in frames[:-1])


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        open_video(Path(tmp_path / "nope.mp4"))


def test_frames_decoded_are_capped_whatever_the_header_says(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    for reported in (40, 0, 4000):  # true, missing, lying
        info = VideoInfo(fps=1000, reported_frames=reported, width=64, height=48)
        got = [i for i, _ in iter_sampled_frames(video, every=1, info=info, max_frames=12)]
        assert got == list(range(12)) and info.frames_read == 12 and info.capped
        info = VideoInfo(fps=1000, reported_frames=reported, width=64, height=48)
        got = [i for i, _ in iter_sampled_frames(video, frames=4, info=info, max_frames=12)]
        assert got == sample_indices(12, frames=4) and info.frames_read == 12 and info.capped
    _, info = open_video(video)
    assert len(list(iter_sampled_frames(video, every=1, info=info, max_frames=40))) == 40
    assert not info.capped


def test_each_frame_decoded_can_stop_the_pass(tmp_path):
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    seen = []

    def stop_at_7(index):
        seen.append(index)
        if index == 7:
            raise VideoError("stopped")

    with pytest.raises(VideoError, match="stopped"):
        list(iter_sampled_frames(video, every=5, on_grab=stop_at_7))
    assert seen == list(range(8))


def test_under_reported_count_resamples_over_the_whole_video(tmp_path):
    """A 40-frame video whose container claims 10: the K frames span all 40, not the start."""
    video = write_numbered_video(tmp_path / "v.mp4", 40)
    info = VideoInfo(fps=10.0, reported_frames=10, width=64, height=48)
    got = [(i, frame_level(f)) for i, f in iter_sampled_frames(video, frames=4, info=info)]
    assert [i for i, _ in got] == [5, 15, 25, 35]
    assert [lvl for _, lvl in got] == [5, 15, 25, 35]
    assert info.frames_read == 40

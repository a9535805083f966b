"""``app.py predict`` over a folder: a row for every video whatever breaks, and a CSV written
as the batch goes (a killed run keeps its verdicts). A stand-in analyzer keeps it exact and
fast."""

from __future__ import annotations

import csv
import json
import types
from pathlib import Path
from typing import Any

import pytest

from dfpipe.extract.video import VideoError
from dfpipe.serve.batch import ROW_FIELDS, find_videos, predict_videos


def result(score: float) -> dict[str, Any]:
    video = {"faces": 1, "frames_sampled": 3, "frames_with_face": 3, "frames_read": 9,
             "fps": 10.0, "duration_s": 0.9, "width": 64, "height": 48}
    return {"faces": [{}], "verdict": "FAKE" if score >= 0.5 else "REAL", "score": score,
            "threshold": 0.5, "margin": score - 0.5, "borderline": False, "aggregate": "mean",
            "message": "", "video": video,
            "timing": {"total_s": 0.1, "decode_s": 0.0, "detect_s": 0.0, "classify_s": 0.0}}


class Judge:
    """Fails in a different way on some names; records the CSV as it stood at each call."""

    FAILURES = {"video.mp4": VideoError("not a video"), "locked.mp4": PermissionError(
        13, "Permission denied", "locked.mp4"), "odd.mp4": RuntimeError("decoder state")}

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: list[int] = []

    def analyze(self, path: Path, **_: Any) -> Any:
        self.seen.append(len(self.out.read_text().splitlines()) if self.out.exists() else -1)
        if path.name in self.FAILURES:
            raise self.FAILURES[path.name]
        return types.SimpleNamespace(result=result(0.9 if "fake" in path.name else 0.1))


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "clips"
    (root / "sub").mkdir(parents=True)
    for name in ("a_fake.mp4", "locked.mp4", "odd.mp4", "sub/b_real.mov", "video.mp4"):
        (root / name).write_bytes(b"x")
    (root / "notes.txt").write_text("not a video")
    (root / "gone.mp4").symlink_to(root / "nowhere.mp4")  # a dangling link is a row too
    return root


def test_every_video_gets_a_row_and_one_bad_file_never_ends_the_batch(folder, tmp_path):
    out = tmp_path / "results.csv"
    videos = find_videos([folder])
    rows = predict_videos(Judge(out), videos, out)
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [Path(r["path"]).name for r in table] == [
        "a_fake.mp4", "gone.mp4", "locked.mp4", "odd.mp4", "b_real.mov", "video.mp4"]
    assert list(table[0]) == list(ROW_FIELDS) and table == [
        {k: str(v) for k, v in row.items()} for row in rows]
    by_name = {Path(r["path"]).name: r for r in table}
    assert by_name["a_fake.mp4"]["verdict"] == "FAKE" and by_name["a_fake.mp4"]["error"] == ""
    assert by_name["b_real.mov"]["verdict"] == "REAL"
    for name, words in (("video.mp4", "not a video"), ("locked.mp4", "Permission denied"),
                        ("odd.mp4", "RuntimeError: decoder state")):
        row = by_name[name]
        assert row["status"] == "error" and row["verdict"] == "ERROR", row
        assert words in row["error"], row


def test_the_csv_is_written_as_the_batch_goes(folder, tmp_path):
    out = tmp_path / "results.csv"
    judge = Judge(out)
    predict_videos(judge, find_videos([folder]), out)
    # at the n-th video the file held the header and the n-1 rows before it
    assert judge.seen == [1, 2, 3, 4, 5, 6]


def test_a_killed_batch_keeps_the_rows_made(folder, tmp_path):
    out = tmp_path / "results.csv"

    class Killed(Judge):
        def analyze(self, path: Path, **kw: Any) -> Any:
            if path.name == "odd.mp4":
                raise KeyboardInterrupt  # what Ctrl+C (or a stop) does mid-batch
            return super().analyze(path, **kw)

    with pytest.raises(KeyboardInterrupt):
        predict_videos(Killed(out), find_videos([folder]), out)
    names = [Path(r["path"]).name for r in csv.DictReader(open(out, newline=""))]
    assert names == ["a_fake.mp4", "gone.mp4", "locked.mp4"]


def test_json_holds_every_row_and_each_result_or_error(folder, tmp_path):
    out = tmp_path / "results.json"
    predict_videos(Judge(out), find_videos([folder]), out)
    doc = json.loads(out.read_text())
    assert len(doc["videos"]) == len(doc["results"]) == 6
    assert sum("error" in r for r in doc["results"]) == 3

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, needs_shared, write_numbered_video

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import manifest_name, read_manifests
from dfpipe.extract import faces as facelib
from dfpipe.extract.run import (
    Settings,
    VideoJob,
    discover,
    in_shard,
    largest_first,
    parse_shard,
    run,
)
from dfpipe.train.sbi.landmarks import detect_landmarks


class _CentreDetector(facelib.Detector):
    """A stand-in detector: one face in the middle of each frame (tests the orchestration)."""

    calls = 0
    interrupt_after: int | None = None

    def __init__(self, min_confidence=0.5):
        self.min_confidence = min_confidence

    def detect(self, frames):
        type(self).calls += 1
        if self.interrupt_after is not None and type(self).calls > self.interrupt_after:
            raise KeyboardInterrupt  # what a kill mid-video looks like to the run
        return [[facelib.Face((f.shape[1] * .3, f.shape[0] * .3, f.shape[1] * .6,
                               f.shape[0] * .6), 0.99)] for f in frames]


@pytest.fixture
def centre(monkeypatch):
    _CentreDetector.calls = 0
    _CentreDetector.interrupt_after = None
    monkeypatch.setitem(facelib.DETECTORS, "centre",
                        facelib.DetectorSpec(_CentreDetector, {"min_confidence": 0.5}, 4))
    return _CentreDetector


def _numbered_dataset(root: Path, n_real=3, n_fake=3) -> Path:
    for i in range(n_real):
        write_numbered_video(root / "real" / f"{i:03d}.mp4", 20)
    for i in range(n_fake):
        write_numbered_video(root / "fake" / "sub" / f"{i:03d}_{(i + 1) % n_real:03d}.mp4", 20)
    return root


def test_layout_manifest_and_crops(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 2, 2)
    out = tmp_path / "out"
    summary = run(data, out, Settings(detector="centre", every=5, size=32))
    assert summary.statuses["ok"] == 4
    recs = {r["relpath"]: r for r in read_manifests(out)}
    fake = recs["fake/sub/000_001.mp4"]
    assert fake["label"] == "fake" and fake["group"] == "000" and fake["group_rule"] == "ffpp_name"
    assert fake["frames_read"] == 20 and fake["frames_sampled"] == 4 and fake["faces_saved"] == 4
    assert fake["settings"]["margin"] == 1.3 and fake["settings"]["every"] == 5
    for crop in fake["crops"]:
        image = cv2.imread(str(out / crop["file"]))
        assert image.shape == (32, 32, 3)
        assert crop["file"].startswith(f"fake/{fake['video_id']}/")
        assert crop["face_size"] == pytest.approx(64 * 0.3, abs=0.2)  # 64x48 frame, box .3-.6
    assert [c["frame"] for c in fake["crops"]] == [0, 5, 10, 15]
    assert not list(out.rglob(".tmp-*"))


def test_no_face_and_non_video_are_recorded_not_fatal(tmp_path):
    from dfpipe.sample.camera import face_photos, write_blank_video, write_face_video

    data = tmp_path / "data"
    write_face_video(data / "real" / "face.mp4", face_photos()[0][1], n_frames=10, seed=1)
    write_blank_video(data / "real" / "blank.mp4", n_frames=10)
    (data / "fake").mkdir(parents=True)
    (data / "fake" / "junk.mp4").write_bytes(b"\x00garbage" * 50)
    (data / "fake" / "empty.avi").write_bytes(b"")
    out = tmp_path / "out"
    summary = run(data, out, Settings(detector="mtcnn", every=5, size=64))
    recs = {r["relpath"]: r for r in read_manifests(out)}
    assert recs["real/face.mp4"]["status"] == "ok"
    assert recs["real/face.mp4"]["faces_saved"] >= 1
    assert recs["real/blank.mp4"]["status"] == "no_face"
    assert "no face" in recs["real/blank.mp4"]["message"]
    for bad in ("fake/junk.mp4", "fake/empty.avi"):
        assert recs[bad]["status"] == "error" and recs[bad]["message"]
        assert not (out / "fake" / recs[bad]["video_id"]).exists()
    assert summary.statuses == {"ok": 1, "no_face": 1, "error": 2}


def test_resume_after_interruption_redoes_nothing(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 3, 3)
    out = tmp_path / "out"
    centre.interrupt_after = 2 * 1  # 20 frames / every 5 = 4 frames = 1 batch per video
    with pytest.raises(KeyboardInterrupt):
        run(data, out, Settings(detector="centre", every=5, size=32))
    first = (out / "manifest.jsonl").read_text().splitlines()
    assert len(first) == 2
    assert not list(out.rglob(".tmp-*"))  # the interrupted video's temp folder was removed
    done = {json.loads(line)["video_id"] for line in first}
    pending = [job for job in discover(data) if job.video_id not in done][0]
    stale = out / pending.label / pending.video_id
    stale.mkdir(parents=True)  # as a kill between rename and manifest append would leave
    (stale / "999999_00.jpg").write_bytes(b"stale")
    centre.interrupt_after = None
    centre.calls = 0
    summary = run(data, out, Settings(detector="centre", every=5, size=32))
    assert summary.skipped == 2 and sum(summary.statuses.values()) == 4
    assert centre.calls == 4
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert lines[:2] == first and len(lines) == 6
    assert len({json.loads(line)["video_id"] for line in lines}) == 6
    assert not list(out.rglob(".tmp-*")) and not (stale / "999999_00.jpg").exists()
    again = run(data, out, Settings(detector="centre", every=5, size=32))
    assert again.skipped == 6 and sum(again.statuses.values()) == 0


def test_resume_with_other_settings_is_refused(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 1, 1)
    run(data, tmp_path / "out", Settings(detector="centre", every=5, size=32))
    with pytest.raises(PipelineError, match="other settings"):
        run(data, tmp_path / "out", Settings(detector="centre", every=4, size=32))
    redo = run(data, tmp_path / "out", Settings(detector="centre", every=4, size=32),
               overwrite=True)
    assert redo.statuses["ok"] == 2


def test_shards_partition_exactly():
    jobs = [VideoJob(f"/x/{i}.mp4", f"real/{i}.mp4", "real", str(i), "self", str(i))
            for i in range(200)]
    shares = [{j.video_id for j in jobs if in_shard(j, (k, 3))} for k in range(3)]
    assert set().union(*shares) == {j.video_id for j in jobs}
    assert sum(len(s) for s in shares) == 200
    assert all(40 < len(s) < 95 for s in shares)


def test_shard_runs_write_side_by_side(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 3, 3)
    out = tmp_path / "out"
    for k in range(2):
        run(data, out, Settings(detector="centre", every=10, size=32), shard=(k, 2))
    assert (out / manifest_name((0, 2))).is_file() and (out / manifest_name((1, 2))).is_file()
    assert len(read_manifests(out)) == 6
    assert json.loads((out / "run.shard-1-of-2.json").read_text())["finished"]


@pytest.mark.parametrize("text", ["3", "2/2", "a/b", "-1/3"])
def test_bad_shard_text(text):
    with pytest.raises(PipelineError):
        parse_shard(text)


def test_input_errors(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no known dataset layout"):
        discover(tmp_path / "empty")
    (tmp_path / "empty" / "real").mkdir()
    with pytest.raises(PipelineError, match="no videos"):
        discover(tmp_path / "empty")


def test_parallel_workers_match_single_process(tmp_path):
    from dfpipe.sample.camera import face_photos, write_face_video

    data = tmp_path / "data"
    photo = face_photos()[0][1]
    for i in range(2):
        write_face_video(data / "real" / f"{i}.mp4", photo, n_frames=10, seed=i)
        write_face_video(data / "fake" / f"{i}_{i}.mp4", photo[:, ::-1], n_frames=10, seed=i)
    one = run(data, tmp_path / "one", Settings(detector="mtcnn", every=5, size=48))
    two = run(data, tmp_path / "two", Settings(detector="mtcnn", every=5, size=48), workers=2)
    def boxes(out):
        return {r["video_id"]: [c["box"] for c in r["crops"]] for r in read_manifests(out)}

    assert one.faces_saved == two.faces_saved > 0
    assert boxes(tmp_path / "one") == boxes(tmp_path / "two")


@pytest.mark.slow
def test_retinaface_end_to_end_with_local_weights(tmp_path, monkeypatch):
    """The real RetinaFace path, on weights saved locally from the package's own network."""
    from retinaface.model import retinaface_model

    monkeypatch.setattr(retinaface_model, "load_weights", lambda model: model)
    weights = tmp_path / "home" / ".deepface" / "weights" / "retinaface.h5"
    weights.parent.mkdir(parents=True)
    retinaface_model.build_model().save_weights(str(weights))
    monkeypatch.undo()
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    write_numbered_video(data / "real" / "a.mp4", 10, size=(160, 120))
    summary = run(data, tmp_path / "out", Settings(detector="retinaface", every=5, size=32))
    (rec,) = read_manifests(tmp_path / "out")
    assert rec["detector"] == "retinaface" and rec["settings"]["min_confidence"] == 0.9
    assert rec["status"] in ("ok", "no_face"), rec["message"]  # random weights: any faces
    assert rec["frames_sampled"] == 2 and summary.statuses["error"] == 0


@needs_shared
def test_shared_clips_with_mtcnn(tmp_path):
    """Real FaceForensics++ clips: faces found, the fake grouped with its target."""
    src = SHARED_DATA / "videos"
    data = tmp_path / "data"
    for rel in ("real/519.mp4", "fake/519_515.mp4"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).symlink_to(src / rel)
    run(data, tmp_path / "out", Settings(detector="mtcnn", frames=3))
    recs = {r["relpath"]: r for r in read_manifests(tmp_path / "out")}
    # 519_515 shows 515's face: it joins 519 and 515 in one identity group
    assert recs["fake/519_515.mp4"]["group"] == recs["real/519.mp4"]["group"] == "515"
    assert recs["fake/519_515.mp4"]["identities"] == ["515", "519"]
    for rec in recs.values():
        assert rec["status"] == "ok" and rec["faces_saved"] == 3
        assert rec["frames_read"] > 100
        image = cv2.imread(str(tmp_path / "out" / rec["crops"][0]["file"]))
        assert image.shape == (299, 299, 3) and np.std(image) > 10
        points = np.array(rec["crops"][0]["landmarks"])  # MTCNN's keypoints, crop pixels
        assert points.shape == (5, 2) and (points > 0).all() and (points < 299).all()
        assert points[0, 0] < points[1, 0] and points[:2, 1].max() < points[3:, 1].min()
        (again,) = detect_landmarks([cv2.cvtColor(image, cv2.COLOR_BGR2RGB)])
        assert again is not None and np.abs(again - points).max() < 5, (again, points)


def test_max_frames_and_non_containers_in_preprocess(tmp_path, centre):
    data = tmp_path / "data"
    write_numbered_video(data / "real" / "long.mp4", 40)
    write_numbered_video(data / "fake" / "clip.mp4", 40)
    (data / "fake" / "list.mp4").write_text("ffconcat version 1.0\nfile 'clip.mp4'\n")
    out = tmp_path / "out"
    summary = run(data, out, Settings(detector="centre", every=5, size=32), max_frames=12)
    recs = {r["relpath"]: r for r in read_manifests(out)}
    long = recs["real/long.mp4"]
    assert long["status"] == "ok" and long["frames_read"] == 12
    assert [c["frame"] for c in long["crops"]] == [0, 5, 10]
    assert "--max-frames 12" in long["message"]
    listing = recs["fake/list.mp4"]
    assert listing["status"] == "error" and "not a supported container" in listing["message"]
    assert summary.statuses["error"] == 1
    with pytest.raises(PipelineError, match="--max-frames"):
        run(data, tmp_path / "out2", Settings(detector="centre"), max_frames=0)


def test_overwrite_redoes_videos_recorded_in_other_manifests(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 3, 3)
    out = tmp_path / "out"
    run(data, out, Settings(detector="centre", every=10, size=32))
    first = {r["video_id"]: r["finished"] for r in read_manifests(out)}
    redo = run(data, out, Settings(detector="centre", every=5, size=32), shard=(0, 2),
               overwrite=True)
    share = {j.video_id for j in discover(data) if in_shard(j, (0, 2))}
    assert share and redo.skipped == 0 and redo.statuses["ok"] == len(share)
    latest = {r["video_id"]: r for r in read_manifests(out)}
    for vid in share:  # the newer record wins, whichever manifest holds it
        assert latest[vid]["finished"] > first[vid] and latest[vid]["settings"]["every"] == 5


def test_a_missing_input_is_named_before_the_detector_is_checked(tmp_path, monkeypatch):
    def no_weights(name):
        raise PipelineError(f"{name} weights missing")

    monkeypatch.setattr(facelib, "preflight", no_weights)
    with pytest.raises(PipelineError, match="input folder not found"):
        run(tmp_path / "no" / "such", tmp_path / "out", Settings(detector="retinaface"))
    assert not (tmp_path / "out").exists()


def test_preprocess_prints_how_many_fakes_have_no_known_source(tmp_path, centre, monkeypatch,
                                                               capsys):
    import importlib.util

    data = _numbered_dataset(tmp_path / "data", 2, 1)
    write_numbered_video(data / "fake" / "other" / "clip.mp4", 20)
    spec = importlib.util.spec_from_file_location(
        "preprocess_script", REPO / "preprocess.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr("sys.argv", ["preprocess.py", "--input", str(data), "--output",
                                     str(tmp_path / "out"), "--detector", "centre",
                                     "--every", "10", "--size", "32"])
    assert script.main() == 0
    printed = capsys.readouterr().out
    assert "fakes with no known source (each its own group, a leak risk): 1" in printed
    assert "--allow-ungrouped-fakes" in printed


def test_an_unreadable_video_is_one_log_line_and_a_record(tmp_path, centre, monkeypatch,
                                                          caplog):
    from dfpipe.extract import run as extract_run

    data = _numbered_dataset(tmp_path / "data", 2, 1)
    opened = extract_run.open_video

    def open_video(path, *args, **kwargs):
        if path.name == "001.mp4":  # what a file this user may not read raises
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(extract_run, "open_video", open_video)
    summary = run(data, tmp_path / "out", Settings(detector="centre", every=5, size=32))
    record = {r["relpath"]: r for r in read_manifests(tmp_path / "out")}["real/001.mp4"]
    assert record["status"] == "error" and "Permission denied" in record["message"]
    assert (summary.statuses["ok"], summary.statuses["error"]) == (2, 1)
    lines = [r for r in caplog.records if "001.mp4" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback


def test_a_symlink_loop_gets_a_manifest_record(tmp_path, centre):
    data = _numbered_dataset(tmp_path / "data", 1, 1)
    loop = data / "real" / "loop.mp4"
    loop.symlink_to(loop)  # resolving it loops
    (data / "real" / "gone.mp4").symlink_to(data / "nowhere.mp4")
    run(data, tmp_path / "out", Settings(detector="centre", every=5, size=32))
    records = {r["relpath"]: r for r in read_manifests(tmp_path / "out")}
    for name in ("real/loop.mp4", "real/gone.mp4"):
        assert records[name]["status"] == "error" and records[name]["message"], name
    assert records["real/000.mp4"]["status"] == "ok"


def test_workers_take_the_largest_videos_first(tmp_path: Path) -> None:
    def job(name: str, size: int) -> VideoJob:
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        return VideoJob(str(path), name, "real", name, "self", name)

    jobs = [job("a.mp4", 10), job("b.mp4", 300), job("c.mp4", 20), job("d.mp4", 300)]
    missing = VideoJob(str(tmp_path / "gone.mp4"), "gone.mp4", "real", "g", "self", "g")
    order = [j.relpath for j in largest_first([*jobs, missing])]
    assert order == ["b.mp4", "d.mp4", "c.mp4", "a.mp4", "gone.mp4"]

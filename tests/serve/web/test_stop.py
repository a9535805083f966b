"""Stopping the server at each stage of a job leaves a clean state: a stop (SIGTERM, Ctrl+C)
fails the running analysis with a message and drops half-drawn heatmaps; a kill while heatmaps
are drawn leaves no orphan ``cam_*.jpg`` and no result that says "being drawn" forever."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path

import pytest
from app_support import StandInAnalyzer, wait_for

from dfpipe.serve.web import jobs as web_jobs
from dfpipe.serve.web.records import RECORD
from dfpipe.serve.web.store import JobStore

JOB = "e" * 32


@pytest.fixture
def make_app(apps):
    return apps


def upload(app, video: Path) -> str:
    data = {"video": (io.BytesIO(video.read_bytes()), "clip.mp4")}
    answer = app.test_client().post("/api/analyze", data=data,
                                    content_type="multipart/form-data")
    assert answer.status_code == 202
    return answer.get_json()["job_id"]


def job_of(app, job_id: str) -> dict:
    return app.extensions["dfpipe"].store.get(job_id)


def test_a_stop_fails_the_running_analysis_cleanly(make_app, video, tmp_path):
    app = make_app(StandInAnalyzer(steps=1200, step_s=0.05))  # a minute, unless stopped
    job_id = upload(app, video)
    wait_for(lambda: job_of(app, job_id)["status"] == "running")
    app.extensions["dfpipe"].shutdown()
    job = job_of(app, job_id)
    assert job["status"] == "error" and "stopped" in job["message"], job
    assert not (tmp_path / "instance" / "jobs" / job_id).exists()
    assert not list((tmp_path / "instance" / "uploads").iterdir())


def test_a_stop_while_heatmaps_are_drawn_drops_them(make_app, video, tmp_path, monkeypatch):
    import dfpipe.serve.gradcam as gradcam

    drawn = []
    stopping = []

    def heatmap_images(cam, crops, calls):
        drawn.append(len(crops))
        if len(drawn) == 3:  # the stop arrives while the third batch is drawn
            stopping[0].set()
        return [b"\xff\xd8 heatmap"] * len(crops)

    monkeypatch.setattr(gradcam, "GradCam", lambda model: types.SimpleNamespace(layer_name="x"))
    monkeypatch.setattr(gradcam, "heatmap_images", heatmap_images)
    monkeypatch.setattr(web_jobs, "read_rgb", lambda path: None)
    app = make_app(StandInAnalyzer(faces=40), gradcam=True, gradcam_batch=1)
    svc = app.extensions["dfpipe"]
    stopping.append(svc.runner.stopping)
    job_id = upload(app, video)
    wait_for(lambda: svc.runner.stopping.is_set())
    svc.shutdown()
    assert len(drawn) == 3  # the drawing stopped there
    job = job_of(app, job_id)
    folder = tmp_path / "instance" / "jobs" / job_id
    assert job["status"] == "done" and job["verdict"] == "FAKE"
    assert job["result"]["heatmaps"] == {"available": False,
                                         "reason": web_jobs.HEATMAPS_CUT}
    assert not list(folder.glob("cam_*.jpg")) and len(list(folder.glob("face_*.jpg"))) == 40
    assert not any(face.get("heatmap") for face in job["result"]["faces"])
    assert json.loads((folder / RECORD).read_text())["job"]["status"] == "done"


def test_a_kill_while_heatmaps_are_drawn_leaves_no_orphan_and_no_endless_wait(make_app,
                                                                            tmp_path):
    instance = tmp_path / "instance"
    store = JobStore(instance / "jobs.sqlite3")
    store.create(JOB, "killed.mp4", 10)
    faces = [{"index": i, "call": "fake", "score": 0.9} for i in range(3)]
    result = {"verdict": "FAKE", "score": 0.9, "faces": faces, "message": "",
              "heatmaps": {"available": False, "reason": "being drawn"}}
    store.update(JOB, status="running", stage="heatmaps", verdict="FAKE", score=0.9,
                 verdict_at=1.0, result=result)
    folder = instance / "jobs" / JOB
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"face_{i:04d}.jpg").write_bytes(b"face")
    (folder / "cam_0000.jpg").write_bytes(b"drawn before the kill")
    (folder / "cam_0001.jpg").write_bytes(b"half")
    client = make_app().test_client()
    job = client.get(f"/api/jobs/{JOB}").get_json()
    assert job["status"] == "done" and job["verdict"] == "FAKE" and "heatmaps" in job["message"]
    heatmaps = client.get(f"/api/jobs/{JOB}/result").get_json()["result"]["heatmaps"]
    assert heatmaps["available"] is False and "being drawn" not in heatmaps["reason"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "face_0000.jpg", "face_0001.jpg", "face_0002.jpg", RECORD]
    assert client.get(f"/api/jobs/{JOB}/faces/0/heatmap.jpg").status_code == 404


def test_a_kill_while_the_record_is_written_leaves_no_temporary_file(make_app, video, tmp_path):
    first = make_app()
    job_id = upload(first, video)
    wait_for(lambda: job_of(first, job_id)["status"] == "done")
    first.extensions["dfpipe"].shutdown()
    folder = tmp_path / "instance" / "jobs" / job_id
    (folder / f".{RECORD}.4242-99.tmp").write_text('{"job": {"id": "half')
    client = make_app().test_client()
    assert client.get(f"/api/jobs/{job_id}").get_json()["status"] == "done"
    assert sorted(p.name for p in folder.iterdir()) == ["face_0000.jpg", RECORD]

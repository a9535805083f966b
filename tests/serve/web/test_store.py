"""The job store's robustness: each finished job keeps its record in its own folder, a corrupt
store is moved aside and rebuilt from the folders, and a store that looks empty never causes a
job folder to be deleted. A stand-in analyzer keeps these fast; the upload is a real video."""

from __future__ import annotations

import errno
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from app_support import StandInAnalyzer, run_job

from dfpipe.serve.web import jobs as web_jobs
from dfpipe.serve.web.records import RECORD

JOB_A = "a" * 32


@pytest.fixture
def make_app(apps):
    return lambda faces=1: apps(StandInAnalyzer(faces))


def result_of(app, job_id: str) -> dict[str, Any] | None:
    return app.test_client().get(f"/api/jobs/{job_id}/result").get_json().get("result")


def test_a_finished_job_keeps_its_record_in_its_own_folder(make_app, video, tmp_path):
    app = make_app()
    job = run_job(app, video)
    folder = tmp_path / "instance" / "jobs" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["face_0000.jpg", RECORD]
    record = json.loads((folder / RECORD).read_text())["job"]
    stored = app.extensions["dfpipe"].store.get(job["id"])
    assert record == stored and record["status"] == "done" and record["verdict"] == "FAKE"


def test_a_no_face_job_leaves_no_empty_folder(make_app, video, tmp_path):
    job = run_job(make_app(faces=0), video)
    assert job["verdict"] == "NO FACE FOUND"
    folder = tmp_path / "instance" / "jobs" / job["id"]
    assert [p.name for p in folder.iterdir()] == [RECORD]


@pytest.mark.parametrize("damage", ["not-sqlite", "damaged-pages"])
def test_a_corrupt_store_is_moved_aside_and_rebuilt_from_the_folders(make_app, video, tmp_path,
                                                                    caplog, damage):
    first = make_app()
    job = run_job(first, video)
    before = result_of(first, job["id"])
    first.extensions["dfpipe"].shutdown()
    instance = tmp_path / "instance"
    store = instance / "jobs.sqlite3"
    if damage == "not-sqlite":
        store.write_bytes(b"this is not a database" * 100)
    else:  # a sound header, then the schema page overwritten
        store.write_bytes(store.read_bytes()[:100] + b"\x07" * (store.stat().st_size - 100))
    for side in ("-wal", "-shm"):
        (instance / f"jobs.sqlite3{side}").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING):
        second = make_app()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "moved aside" in warnings[0] and "\n" not in warnings[0]
    aside = sorted(p.name for p in instance.glob("jobs.sqlite3.corrupt-*"))
    assert aside[0].endswith(tuple("0123456789"))  # the store itself
    if damage == "not-sqlite":  # SQLite never opened it, so its side files are kept too
        assert len(aside) == 3 and {n[-4:] for n in aside} >= {"-wal", "-shm"}
    assert result_of(second, job["id"]) == before
    assert (instance / "jobs" / job["id"] / "face_0000.jpg").is_file()


def test_an_empty_store_never_deletes_job_folders(make_app, video, tmp_path):
    first = make_app()
    job = run_job(first, video)
    first.extensions["dfpipe"].shutdown()
    instance = tmp_path / "instance"
    partial = instance / "jobs" / JOB_A  # no record: a job killed mid-analysis, or older
    partial.mkdir()
    (partial / "face_0000.jpg").write_bytes(b"partial")
    (instance / "jobs.sqlite3").write_bytes(b"")
    for side in ("-wal", "-shm"):
        (instance / f"jobs.sqlite3{side}").unlink(missing_ok=True)
    second = make_app()
    assert sorted(p.name for p in (instance / "jobs").iterdir()) == sorted([job["id"], JOB_A])
    assert second.test_client().get(f"/api/jobs/{job['id']}").get_json()["status"] == "done"


def test_a_sound_store_still_sweeps_folders_no_job_owns(make_app, video, tmp_path):
    first = make_app()
    job = run_job(first, video)
    first.extensions["dfpipe"].shutdown()
    partial = tmp_path / "instance" / "jobs" / JOB_A
    partial.mkdir()
    make_app()
    assert [p.name for p in (tmp_path / "instance" / "jobs").iterdir()] == [job["id"]]


class DiskFull(StandInAnalyzer):
    """Writing a face crop fails as on a full disk."""

    def analyze(self, path, progress=None, save_crop=None, limits=None):
        def full(*_):
            raise OSError(errno.ENOSPC, "No space left on device")

        return super().analyze(path, progress, full, limits)


@pytest.mark.parametrize("where", ["face crops", "result record"])
def test_a_full_disk_fails_the_job_with_a_message_and_the_server_goes_on(make_app, video,
                                                                         tmp_path, monkeypatch,
                                                                         where):
    app = make_app()
    svc = app.extensions["dfpipe"]
    if where == "face crops":
        monkeypatch.setattr(svc.runner, "analyzer", DiskFull())
    else:
        def write_record(folder, job):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(web_jobs, "write_record", write_record)
    job = run_job(app, video)
    assert job["status"] == "error" and "disk may be full" in job["message"], job
    assert "No space left on device" in job["message"]
    assert not (tmp_path / "instance" / "jobs" / job["id"]).exists()
    monkeypatch.undo()
    assert run_job(app, video)["status"] == "done"  # the server goes on


def test_an_upload_on_a_full_disk_is_refused_and_the_server_goes_on(make_app, video,
                                                                    monkeypatch):
    from dfpipe.serve.web import routes

    app = make_app()
    real = routes._save_within

    def full(stream, path, limit):
        Path(path).write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(routes, "_save_within", full)
    client = app.test_client()
    answer = client.post("/api/analyze", content_type="multipart/form-data",
                         data={"video": (io.BytesIO(video.read_bytes()), "clip.mp4")})
    assert answer.status_code == 507 and "No space left" in answer.get_json()["error"]
    assert not list(app.extensions["dfpipe"].uploads.iterdir())
    monkeypatch.setattr(routes, "_save_within", real)
    assert run_job(app, video)["status"] == "done"

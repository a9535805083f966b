"""The JSON API through Flask's test client, on generated videos: verdicts, exports, limits,
bad input, a full queue, persistence across a restart, and how the server is started."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_support import (
    app_script,
    as_mjpg_avi,
    blank_video,
    crop_metadata,
    face_video,
    save_tiny_model,
    wait_for,
)

from dfpipe.inference import Analyzer
from dfpipe.web import create_app
from dfpipe.web.store import JobStore

UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.upload$")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    face = face_video(root / "face.mp4", n_frames=9)
    files = {"face": face, "blank": blank_video(root / "blank.mp4")}
    data = face.read_bytes()
    files["truncated_mp4"] = root / "truncated.mp4"
    files["truncated_mp4"].write_bytes(data[: len(data) // 2])
    avi = as_mjpg_avi(face, root / "face.avi")
    files["truncated_avi"] = root / "truncated.avi"
    files["truncated_avi"].write_bytes(avi.read_bytes()[: int(avi.stat().st_size * 0.7)])
    ok, jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))
    files["image"] = root / "photo.mp4"
    files["image"].write_bytes(jpeg.tobytes())
    files["random"] = root / "random.mp4"
    files["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["empty"] = root / "empty.mp4"
    files["empty"].write_bytes(b"")
    huge = root / "huge.avi"  # one 8192x4352 frame: above 8K UHD (7680x4320)
    writer = cv2.VideoWriter(str(huge), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (8192, 4352))
    writer.write(np.zeros((4352, 8192, 3), np.uint8))
    writer.release()
    files["huge"] = huge
    return files


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "fake.h5", bias=4.0,
                           threshold=0.5, crop=crop_metadata("mtcnn", every=3))


@pytest.fixture(scope="module")
def analyzer(model_file):
    return Analyzer.load(model_file)


@pytest.fixture
def make_app(tmp_path, analyzer):
    apps = []

    def make(analyzer_=None, **config):
        config.setdefault("instance", tmp_path / "instance")
        app = create_app(config, analyzer_ or analyzer)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["dfpipe"].shutdown()


def post(client, path: Path, name: str | None = None, headers=None):
    data = {"video": (io.BytesIO(Path(path).read_bytes()), name or Path(path).name)}
    return client.post("/api/analyze", data=data, content_type="multipart/form-data",
                       headers=headers or {})


def finished(client, job_id: str, timeout: float = 90.0) -> dict:
    def check():
        job = client.get(f"/api/jobs/{job_id}").get_json()
        return job if job["status"] in ("done", "error") else None

    return wait_for(check, timeout)


def uploads(app) -> list[str]:
    return sorted(p.name for p in app.extensions["dfpipe"].uploads.iterdir())


def test_video_is_judged_with_full_result_csv_and_images(make_app, media):
    app = make_app()
    client = app.test_client()
    response = post(client, media["face"], "interview.mp4")
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == f"/api/jobs/{job_id}"
    job = finished(client, job_id)
    assert job["status"] == "done" and job["verdict"] == "FAKE"
    result = job["result"]
    assert result["verdict"] == "FAKE" and result["score"] > 0.9 and result["threshold"] == 0.5
    assert result["video"]["name"] == "interview.mp4" and result["video"]["frames_read"] == 9
    assert [f["frame"] for f in result["frames"]] == [0, 3, 6]
    assert len(result["faces"]) == 3 and all(f["call"] == "fake" for f in result["faces"])
    assert job["progress"] == {"stage": "done", "done": 3, "total": 3, "fraction": 1.0}
    assert job["upload_to_verdict_s"] > 0 and result["heatmaps"]["available"] is True

    for face in result["faces"]:
        for url in (face["crop_url"], face["heatmap_url"]):
            image = client.get(url)
            assert image.status_code == 200 and image.mimetype == "image/jpeg"
            pixels = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
            assert pixels.shape == (64, 64, 3)

    table = client.get(f"/api/jobs/{job_id}.csv")
    assert table.status_code == 200 and table.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(table.get_data(as_text=True))))
    assert [int(r["frame"]) for r in rows] == [0, 3, 6]
    assert {r["verdict"] for r in rows} == {"FAKE"}
    assert [float(r["score"]) for r in rows] == pytest.approx(
        [f["score"] for f in result["faces"]])
    export = client.get(f"/api/jobs/{job_id}.json")
    assert "attachment" in export.headers["Content-Disposition"]
    assert export.get_json()["result"]["score"] == pytest.approx(result["score"])

    assert uploads(app) == []  # deleted as soon as it was analysed
    history = client.get("/api/jobs").get_json()["jobs"]
    assert [j["id"] for j in history] == [job_id] and history[0]["verdict"] == "FAKE"


def test_health_and_model_info(make_app):
    client = make_app().test_client()
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["model"] == "fake.h5" and health["jobs"]["workers"] == 1
    info = client.get("/api/model").get_json()
    assert info["backbone"] == "tiny" and info["threshold"] == 0.5
    assert info["detector"] == "mtcnn" and info["crop"]["every"] == 3
    assert info["crop_from_metadata"] is True and info["aggregate"] == "mean"
    assert info["metadata"]["class_names"] == ["real", "fake"]
    assert info["limits"]["max_upload_mb"] == 200.0


def test_results_survive_a_restart(make_app, media, tmp_path):
    first = make_app()
    client = first.test_client()
    job_id = post(client, media["face"]).get_json()["job_id"]
    before = finished(client, job_id)
    first.extensions["dfpipe"].shutdown()

    second = make_app()
    client = second.test_client()
    after = client.get(f"/api/jobs/{job_id}").get_json()
    assert after["status"] == "done" and after["result"] == before["result"]
    assert client.get(after["result"]["faces"][0]["crop_url"]).status_code == 200
    assert client.get(f"/api/jobs/{job_id}.csv").status_code == 200


def test_restart_closes_jobs_that_can_never_finish(make_app, tmp_path):
    instance = tmp_path / "instance"
    store = JobStore(instance / "jobs.sqlite3")
    store.create("a" * 32, "lost.mp4", 10)
    (instance / "uploads").mkdir(parents=True)
    (instance / "uploads" / f"{'a' * 32}.upload").write_bytes(b"x")
    client = make_app().test_client()
    job = client.get(f"/api/jobs/{'a' * 32}").get_json()
    assert job["status"] == "error" and "restarted" in job["message"]
    assert not list((instance / "uploads").iterdir())


def test_upload_over_the_size_limit_is_413_json(make_app, media):
    client = make_app(max_upload_mb=0.005).test_client()
    response = post(client, media["face"])
    assert response.status_code == 413
    assert "0.005 MB limit" in response.get_json()["error"]
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize("name,status,words", [
    ("empty", 400, "empty"),
    ("random", 415, "cannot be opened as a video"),
    ("image", 415, "JPEG image, not a video"),
    ("truncated_mp4", 415, "cannot be opened as a video"),
    ("huge", 422, "8192x4352"),
])
def test_bad_input_is_a_clear_4xx_and_the_server_keeps_serving(make_app, media, name, status,
                                                               words):
    app = make_app()
    client = app.test_client()
    response = post(client, media[name])
    assert response.status_code == status
    body = response.get_json()
    assert words in body["error"] and body["status"] == status
    assert uploads(app) == [] and client.get("/api/jobs").get_json()["jobs"] == []
    assert client.get("/api/health").get_json()["status"] == "ok"


def test_no_face_and_truncated_video_give_explicit_results(make_app, media):
    client = make_app().test_client()
    blank = finished(client, post(client, media["blank"]).get_json()["job_id"])
    assert blank["status"] == "done" and blank["verdict"] == "NO FACE FOUND"
    assert blank["result"]["score"] is None and "no face" in blank["result"]["message"]
    assert blank["result"]["heatmaps"] == {"available": False, "reason": "no face to explain"}
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/api/jobs/{blank['id']}.csv").get_data(as_text=True))))
    assert len(rows) == 1 and rows[0]["verdict"] == "NO FACE FOUND"
    cut = finished(client, post(client, media["truncated_avi"]).get_json()["job_id"])
    assert cut["status"] == "done" and cut["verdict"] in ("FAKE", "REAL")
    assert any("ended early" in w for w in cut["result"]["warnings"])


def test_malformed_requests(make_app, media):
    client = make_app().test_client()
    assert client.post("/api/analyze").status_code == 400
    data = {"video": [(io.BytesIO(media["face"].read_bytes()), "a.mp4"),
                      (io.BytesIO(media["face"].read_bytes()), "b.mp4")]}
    two = client.post("/api/analyze", data=data, content_type="multipart/form-data")
    assert two.status_code == 400 and "one video per request" in two.get_json()["error"]
    missing = client.get(f"/api/jobs/{'0' * 32}")
    assert missing.status_code == 404 and missing.is_json
    assert client.get("/api/jobs/../../etc/passwd").status_code == 404
    assert client.get("/api/nothing").get_json()["status"] == 404


class Gate:
    """The real analyzer, held until the test opens the gate (to fill the queue)."""

    def __init__(self, inner: Analyzer) -> None:
        self.inner = inner
        self.opened = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def analyze(self, *args, **kwargs):
        assert self.opened.wait(60), "the test never opened the gate"
        return self.inner.analyze(*args, **kwargs)


def test_full_queue_answers_503_with_a_retry_hint(make_app, media, analyzer):
    gate = Gate(analyzer)
    app = make_app(gate, workers=1, queue_size=1, retry_after_s=7)
    client = app.test_client()
    try:
        first = post(client, media["face"], "../../etc/evil name.mp4").get_json()["job_id"]
        wait_for(lambda: client.get(f"/api/jobs/{first}").get_json()["status"] == "running")
        second = post(client, media["face"]).get_json()["job_id"]
        refused = post(client, media["face"])
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "7"
        assert refused.get_json()["retry_after_s"] == 7 and "busy" in refused.get_json()["error"]
        assert client.get("/api/health").get_json()["jobs"] == {
            "workers": 1, "running": 1, "queued": 1, "capacity": 1}
        # on disk: random names only, never the client's
        names = uploads(app)
        assert len(names) == 2 and all(UPLOAD_NAME.match(n) for n in names)
        instance = app.extensions["dfpipe"].uploads.parent
        assert not [p for p in instance.rglob("*") if "evil" in p.name]
        assert client.get(f"/api/jobs/{first}").get_json()["filename"] == "evil name.mp4"
    finally:
        gate.opened.set()
    for job_id in (first, second):
        assert finished(client, job_id)["verdict"] == "FAKE"
    assert post(client, media["face"]).status_code == 202
    assert len(client.get("/api/jobs").get_json()["jobs"]) == 3


def test_delete_removes_result_and_images(make_app, media):
    app = make_app()
    client = app.test_client()
    job = finished(client, post(client, media["face"]).get_json()["job_id"])
    url = job["result"]["faces"][0]["crop_url"]
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert client.get(url).status_code == 404


def test_api_token_guards_the_api_but_not_health(make_app, media):
    client = make_app(api_token="s3cret").test_client()
    assert client.get("/api/model").status_code == 401
    assert post(client, media["face"]).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/jobs", headers={"X-API-Token": "s3cret"}).status_code == 200
    assert client.get("/api/health").status_code == 200
    assert client.get("/").status_code == 200


def test_page_is_self_contained_and_locked_down(make_app):
    app = make_app()
    assert app.debug is False
    client = app.test_client()
    for page in ("/", "/history", f"/jobs/{'b' * 32}"):
        response = client.get(page)
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        html = response.get_data(as_text=True)
        links = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert links and all(link.startswith("/") for link in links)
    root = Path(__file__).resolve().parents[1]
    for asset in [*(root / "static").iterdir(), *(root / "templates").iterdir()]:
        text = asset.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text, asset.name
    assert client.get("/static/app.js").status_code == 200


def test_started_as_documented_it_serves_with_waitress(monkeypatch, model_file, tmp_path):
    import waitress

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("DFPIPE_API_TOKEN", "from-env")
    script = app_script()
    assert script.main(["--model", str(model_file), "--instance", str(tmp_path / "inst"),
                        "--port", "5123"]) == 0
    (app, kwargs), = calls
    try:
        assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 5123
        assert app.debug is False and app.config["MAX_CONTENT_LENGTH"] == 200 * 1024 * 1024
        assert kwargs["max_request_body_size"] > app.config["MAX_CONTENT_LENGTH"]
        assert app.extensions["dfpipe"].config.api_token == "from-env"
    finally:
        app.extensions["dfpipe"].shutdown()


def test_heatmaps_give_way_to_analyses(make_app, media):
    app = make_app()
    svc = app.extensions["dfpipe"]
    analysing = threading.Event()
    analysing.set()
    svc.runner.busy = lambda: analysing.is_set() or svc.pool.busy()
    client = app.test_client()
    job_id = post(client, media["face"]).get_json()["job_id"]
    job = wait_for(lambda: client.get(f"/api/jobs/{job_id}").get_json()["verdict"] and
                   client.get(f"/api/jobs/{job_id}").get_json())
    time.sleep(0.5)  # the heatmap thread is waiting, not drawing
    job = client.get(f"/api/jobs/{job_id}").get_json()
    assert job["status"] == "running" and job["progress"]["stage"] == "heatmaps"
    assert job["progress"]["done"] == 0 and job["result"]["verdict"] == "FAKE"
    assert job["result"]["heatmaps"] == {"available": False, "reason": "being drawn"}
    assert client.get(f"/api/jobs/{job_id}.csv").status_code == 200  # usable already
    analysing.clear()
    done = finished(client, job_id)
    assert done["status"] == "done" and done["result"]["heatmaps"]["available"] is True
    assert all(f["heatmap_url"] for f in done["result"]["faces"])


def test_unknown_crop_settings_are_stated_by_the_api_and_the_job(make_app, media, tmp_path):
    path = save_tiny_model(tmp_path / "nocrop.h5", bias=4.0, crop=None)
    client = make_app(Analyzer.load(path, every=3), gradcam=False).test_client()
    info = client.get("/api/model").get_json()
    assert info["crop_unknown"] == ["margin", "size", "detector"]
    job = finished(client, post(client, media["face"]).get_json()["job_id"])
    assert job["status"] == "done"
    assert any(w.startswith("crop settings unknown") for w in job["result"]["warnings"])

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
    claiming_fps,
    crop_metadata,
    face_video,
    save_tiny_model,
    wait_for,
)
from conftest import REPO

from dfpipe.core.errors import PipelineError
from dfpipe.serve.analyzer import Analyzer
from dfpipe.serve.web import create_app
from dfpipe.serve.web import routes as web_routes
from dfpipe.serve.web.store import JobStore

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
    folder = tmp_path_factory.mktemp("model")
    return save_tiny_model(folder / "fake.h5", bias=4.0, threshold=0.5,
                           crop=crop_metadata("mtcnn", every=3),
                           split={"folder": str(folder / "splits" / "ffpp")})


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
    """The finished job as polled, with its result fetched from its own URL."""
    def check():
        job = client.get(f"/api/jobs/{job_id}").get_json()
        return job if job["status"] in ("done", "error") else None

    job = wait_for(check, timeout)
    assert "result" not in job
    if job["status"] == "done":
        job["result"] = client.get(job["result_url"]).get_json()["result"]
    return job


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
    after = finished(client, job_id)
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


def test_api_token_guards_the_api_health_included(make_app, media):
    client = make_app(api_token="s3cret").test_client()
    assert client.get("/api/model").status_code == 401
    assert post(client, media["face"]).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/jobs", headers={"X-API-Token": "s3cret"}).status_code == 200
    assert client.get("/api/health").status_code == 401  # as the README says: every call
    assert client.get("/api/health", headers={"X-API-Token": "s3cret"}).status_code == 200
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
    root = REPO
    for asset in [*(root / "static").iterdir(), *(root / "templates").iterdir()]:
        text = asset.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text, asset.name
    assert client.get("/static/app.js").status_code == 200


def recorded_servers(monkeypatch) -> list:
    """Replace waitress.create_server by a recorder whose server returns from run() at once."""
    import types

    import waitress

    calls: list = []

    def create_server(app, **kw):
        calls.append((app, kw))
        return types.SimpleNamespace(run=lambda: None)

    monkeypatch.setattr(waitress, "create_server", create_server)
    return calls


def test_started_as_documented_it_serves_with_waitress(monkeypatch, model_file, tmp_path):
    calls = recorded_servers(monkeypatch)
    monkeypatch.setenv("DFPIPE_API_TOKEN", "from-env")
    script = app_script()
    assert script.main(["--model", str(model_file), "--instance", str(tmp_path / "inst"),
                        "--port", "5123"]) == 0
    (app, kwargs), = calls
    try:
        assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 5123
        limit = 200 * 1024 * 1024
        assert app.debug is False and app.config["MAX_CONTENT_LENGTH"] == limit + 64 * 1024
        assert kwargs["max_request_body_size"] == limit + 1024 * 1024
        assert kwargs["connection_limit"] == 1000 and kwargs["channel_timeout"] == 30
        assert kwargs["asyncore_use_poll"] is True
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
    result = client.get(job["result_url"]).get_json()["result"]
    assert job["progress"]["done"] == 0 and result["verdict"] == "FAKE"
    assert result["heatmaps"] == {"available": False, "reason": "being drawn"}
    assert client.get(f"/api/jobs/{job_id}.csv").status_code == 200  # usable already
    analysing.clear()
    done = finished(client, job_id)
    assert done["status"] == "done" and done["result"]["heatmaps"]["available"] is True
    assert all(f["heatmap_url"] for f in done["result"]["faces"])


# -- hardening (issue 14) ---------------------------------------------------------------------

def test_1_work_per_upload_is_bounded_by_what_is_decoded(make_app, media, tmp_path):
    # 60 frames whose header claims 1,000 fps: "0.06 s", far under any duration limit
    fast = claiming_fps(media["face"], tmp_path / "fast.avi", 1000.0, 5)
    client = make_app(max_frames=12, max_faces=3, job_timeout_s=60).test_client()
    job = finished(client, post(client, fast).get_json()["job_id"])
    video = job["result"]["video"]
    assert job["status"] == "done" and video["frames_read"] == 12 and video["faces"] == 3
    assert video["frames_capped"] is True and video["faces_capped"] is True
    assert [f["frame"] for f in job["result"]["frames"]] == [0, 3, 6]
    assert any("frame limit" in w for w in job["result"]["warnings"])
    info = client.get("/api/model").get_json()["limits"]
    assert info["max_frames"] == 12 and info["job_timeout_s"] == 60

    slow = make_app(instance=tmp_path / "slow", job_timeout_s=1e-6).test_client()
    failed = finished(slow, post(slow, media["face"]).get_json()["job_id"])
    assert failed["status"] == "error" and "longer than the 1e-06 s limit" in failed["message"]
    small = make_app(instance=tmp_path / "small", max_frame_pixels=160 * 120 - 1).test_client()
    assert post(small, media["face"]).status_code == 422


def test_2_only_media_containers_reach_ffmpeg(make_app, media):
    app = make_app()
    client = app.test_client()
    beside = app.extensions["dfpipe"].uploads / "beside.mp4"
    beside.write_bytes(media["face"].read_bytes())  # a video the list could name
    listing = beside.with_name("list.txt")
    listing.write_text("ffconcat version 1.0\nfile 'beside.mp4'\n")
    assert cv2.VideoCapture(str(listing)).isOpened()  # FFmpeg alone would open it
    response = post(client, listing, "clip.mp4")
    assert response.status_code == 415
    assert "not a supported container" in response.get_json()["error"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_3_a_foreign_page_cannot_use_the_api(make_app, media, tmp_path):
    client = make_app().test_client()
    rebound = client.get("/api/health", headers={"Host": "evil.example"})
    assert rebound.status_code == 400 and "evil.example" in rebound.get_json()["error"]
    assert client.get("/", headers={"Host": "evil.example:5000"}).status_code == 400
    for headers in ({"Origin": "http://evil.example"},
                    {"Referer": "http://evil.example/page.html"},
                    {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        refused = post(client, media["face"], headers=headers)
        assert refused.status_code == 403, headers
        assert "cross-origin" in refused.get_json()["error"]
    assert client.get("/api/jobs").get_json()["jobs"] == []
    # the page's own upload (same origin), and a client that is not a browser, still work
    own = post(client, media["face"], headers={"Origin": "http://localhost",
                                               "Referer": "http://localhost/",
                                               "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 202
    job = finished(client, own.get_json()["job_id"])
    gone = client.delete(f"/api/jobs/{job['id']}", headers={"Origin": "http://evil.example"})
    assert gone.status_code == 403 and client.get(f"/api/jobs/{job['id']}").status_code == 200
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200

    named = make_app(instance=tmp_path / "named", allowed_hosts=["dfpipe.lan"]).test_client()
    assert named.get("/api/health", headers={"Host": "dfpipe.lan:8000"}).status_code == 200
    assert named.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
    wide = make_app(instance=tmp_path / "wide", host="0.0.0.0").test_client()
    assert wide.get("/api/health", headers={"Host": "192.168.1.5:5000"}).status_code == 200
    assert wide.get("/api/health", headers={"Host": "evil.example"}).status_code == 400


def _serve_as_documented(monkeypatch, model_file, instance, *args):
    """The app and waitress server exactly as ``python app.py serve`` builds them, on a free
    loopback port, running in a thread."""
    import waitress

    real_create_server = waitress.create_server
    calls = recorded_servers(monkeypatch)
    app_script().main(["--model", str(model_file), "--instance", str(instance), *args])
    (app, kwargs), = calls
    kwargs.update(host="127.0.0.1", port=0, threads=2)
    server = real_create_server(app, **kwargs)

    def run():
        try:
            server.run()
        except OSError:  # the test closed the server while it was polling
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return app, server, thread


def test_4_oversized_uploads_are_refused_before_they_land(monkeypatch, model_file, tmp_path):
    import socket

    app, server, thread = _serve_as_documented(monkeypatch, model_file, tmp_path / "inst",
                                               "--max-upload-mb", "0.05")
    try:
        declared = int(0.05 * 1024 * 1024) + 4 * 1024 * 1024  # 4 MB over the limit
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
            sock.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: multipart/form-data; boundary=x\r\n"
                         f"Content-Length: {declared}\r\n\r\n".encode() + b"x" * 1024)
            reply = sock.recv(4096)  # answered without the rest of the body being sent
        assert reply.startswith(b"HTTP/1.1 413")
    finally:
        server.close()
        app.extensions["dfpipe"].shutdown()
        thread.join(5)


def test_4_a_full_queue_refuses_before_saving_or_decoding(make_app, media, analyzer,
                                                          monkeypatch):
    checked = []
    real_check = web_routes.check_video
    monkeypatch.setattr(web_routes, "check_video",
                        lambda *a, **k: checked.append(a) or real_check(*a, **k))
    gate = Gate(analyzer)
    app = make_app(gate, workers=1, queue_size=1)
    client = app.test_client()
    try:
        first = post(client, media["face"]).get_json()["job_id"]
        wait_for(lambda: client.get(f"/api/jobs/{first}").get_json()["status"] == "running")
        assert post(client, media["face"]).status_code == 202
        before = (len(checked), uploads(app))
        refused = post(client, media["face"])
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert (len(checked), uploads(app)) == before  # nothing saved, nothing decoded
    finally:
        gate.opened.set()
    over = make_app(instance=app.extensions["dfpipe"].uploads.parent.parent / "over",
                    max_upload_mb=media["face"].stat().st_size / 1024 / 1024 - 1e-6)
    big = post(over.test_client(), media["face"])  # one byte over: within the form slack
    assert big.status_code == 413 and "MB limit" in big.get_json()["error"]
    assert uploads(over) == []


def _finished_job(store: JobStore, artifacts: Path, job_id: str, created: float) -> None:
    store.create(job_id, f"{job_id[:4]}.mp4", 10)
    store.update(job_id, status="done", stage="done", verdict="FAKE", score=0.9,
                 created=created, finished=created, result={"faces": []})
    (artifacts / job_id).mkdir(parents=True)
    (artifacts / job_id / "face_0000.jpg").write_bytes(b"jpeg")


def test_5_results_do_not_pile_up(make_app, media, tmp_path):
    instance = tmp_path / "instance"
    store = JobStore(instance / "jobs.sqlite3")
    artifacts = instance / "jobs"
    now = time.time()
    ids = [c * 32 for c in "abcd"]
    for age_days, job_id in zip((40, 3, 2, 1), ids, strict=True):
        _finished_job(store, artifacts, job_id, now - age_days * 86400)
    app = make_app(keep_jobs=2, keep_days=30)
    client = app.test_client()
    left = [j["id"] for j in client.get("/api/jobs").get_json()["jobs"]]
    assert left == [ids[3], ids[2]]  # the 40-day-old one and the oldest beyond 2 went
    assert sorted(p.name for p in artifacts.iterdir()) == sorted(left)
    new = finished(client, post(client, media["face"]).get_json()["job_id"])
    wait_for(lambda: len(client.get("/api/jobs").get_json()["jobs"]) == 2)
    left = [j["id"] for j in client.get("/api/jobs").get_json()["jobs"]]
    assert left == [new["id"], ids[3]]
    assert sorted(p.name for p in artifacts.iterdir()) == sorted(left)


def test_5_a_job_killed_mid_analysis_leaves_no_files(make_app, tmp_path):
    instance = tmp_path / "instance"
    store = JobStore(instance / "jobs.sqlite3")
    killed, orphan = "c" * 32, "d" * 32
    store.create(killed, "killed.mp4", 10)
    store.update(killed, status="running", stage="frames")
    for job_id in (killed, orphan):
        (instance / "jobs" / job_id).mkdir(parents=True)
        (instance / "jobs" / job_id / "face_0000.jpg").write_bytes(b"partial")
    client = make_app().test_client()
    assert client.get(f"/api/jobs/{killed}").get_json()["status"] == "error"
    assert client.get(f"/api/jobs/{killed}/faces/0.jpg").status_code == 404
    assert not list((instance / "jobs").iterdir())


def test_6_private_images_names_only_one_server_small_polls(make_app, media, analyzer,
                                                            tmp_path, monkeypatch):
    app = make_app()
    client = app.test_client()
    job_id = post(client, media["face"]).get_json()["job_id"]
    poll = client.get(f"/api/jobs/{job_id}")
    assert "result" not in poll.get_json() and len(poll.data) < 2000
    job = finished(client, job_id)
    poll = client.get(f"/api/jobs/{job_id}").get_json()
    assert poll["verdict"] == "FAKE" and poll["progress"]["fraction"] == 1.0
    assert "result" not in poll and poll["result_url"] == f"/api/jobs/{job_id}/result"
    for face in job["result"]["faces"]:
        for url in (face["crop_url"], face["heatmap_url"]):
            image = client.get(url)
            assert image.status_code == 200
            assert image.headers["Cache-Control"] == "private, no-store"
    assert client.get(f"/api/jobs/{'e' * 32}/result").status_code == 404

    # file names only: the model's folder, the instance and the split folder never show
    info = client.get("/api/model")
    assert str(tmp_path) not in info.get_data(as_text=True)
    assert str(analyzer.model_path.parent) not in info.get_data(as_text=True)
    assert info.get_json()["name"] == "fake.h5"
    assert info.get_json()["metadata"]["split"]["folder"] == "ffpp"

    class Vanishing(Gate):
        def analyze(self, path, *args, **kwargs):
            Path(path).unlink()  # the upload is gone before it is read
            return self.inner.analyze(path, *args, **kwargs)

    other = make_app(Vanishing(analyzer), instance=tmp_path / "other").test_client()
    failed = finished(other, post(other, media["face"]).get_json()["job_id"])
    assert failed["status"] == "error" and "not found" in failed["message"]
    assert "/" not in failed["message"] and str(tmp_path) not in failed["message"]

    # one server per instance folder: the second is refused in one line, before loading
    with pytest.raises(PipelineError, match="already using the instance folder"):
        make_app()
    with pytest.raises(PipelineError, match="already using the instance folder"):
        app_script().main(["--model", str(tmp_path / "missing.h5"),
                           "--instance", str(tmp_path / "instance")])


def test_unknown_crop_settings_are_stated_by_the_api_and_the_job(make_app, media, tmp_path):
    path = save_tiny_model(tmp_path / "nocrop.h5", bias=4.0, crop=None)
    client = make_app(Analyzer.load(path, every=3), gradcam=False).test_client()
    info = client.get("/api/model").get_json()
    assert info["crop_unknown"] == ["margin", "size", "detector"]
    job = finished(client, post(client, media["face"]).get_json()["job_id"])
    assert job["status"] == "done"
    assert any(w.startswith("crop settings unknown") for w in job["result"]["warnings"])

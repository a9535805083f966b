"""/metrics: Prometheus text format, counted from what the app really did, one registry per
app, and guarded by the API token like every other route."""

from __future__ import annotations

import io

import pytest
from app_support import run_job
from prometheus_client.parser import text_string_to_metric_families

TOKEN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def make_app(apps):
    return lambda name="instance", load=1.5, **config: apps(name=name, model_load_s=load,
                                                             **config)


def samples(client, headers=None) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def upload(client, data: bytes, headers=None):
    return client.post("/api/analyze", data={"video": (io.BytesIO(data), "x.mp4")},
                       content_type="multipart/form-data", headers=headers or {})


def test_metrics_count_uploads_refusals_jobs_and_the_model_load(make_app, video):
    app = make_app(api_token="s3cret", max_upload_mb=0.05)
    client = app.test_client()
    assert run_job(app, video, TOKEN)["status"] == "done"
    assert upload(client, b"not a video at all", TOKEN).status_code == 415
    assert upload(client, b"\0" * 80_000, TOKEN).status_code == 413
    assert upload(client, b"no token").status_code == 401
    assert client.get("/api/model", headers={**TOKEN, "Host": "evil.example"}).status_code == 400
    got = samples(client, TOKEN)
    assert got[("dfpipe_uploads_total", (("outcome", "accepted"),))] == 1
    assert got[("dfpipe_uploads_total", (("outcome", "not_a_video"),))] == 1
    assert got[("dfpipe_uploads_total", (("outcome", "too_large"),))] == 1
    for reason in ("not_a_video", "too_large", "unauthorized", "host"):
        assert got[("dfpipe_refusals_total", (("reason", reason),))] == 1, reason
    assert got[("dfpipe_jobs_finished_total", (("status", "done"),))] == 1
    assert got[("dfpipe_job_duration_seconds_count", ())] == 1
    assert got[("dfpipe_job_queue_wait_seconds_count", ())] == 1
    assert got[("dfpipe_model_load_seconds", ())] == 1.5
    assert got[("dfpipe_jobs_in_pool", (("state", "running"),))] == 0


def test_each_app_has_its_own_registry(make_app, video):
    first, second = make_app("one"), make_app("two", load=0.25)
    run_job(first, video)
    assert samples(first.test_client())[("dfpipe_uploads_total", (("outcome", "accepted"),))] == 1
    other = samples(second.test_client())
    assert ("dfpipe_uploads_total", (("outcome", "accepted"),)) not in other
    assert other[("dfpipe_model_load_seconds", ())] == 0.25


def test_metrics_need_the_token_when_one_is_set(make_app):
    client = make_app(api_token="s3cret").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers=TOKEN).status_code == 200

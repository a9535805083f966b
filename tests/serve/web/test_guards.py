"""Small guarantees of the web app: the token guards /api/health too, the Origin check compares
the scheme, JSON answers are never cached, and a form-parser limit is named as such."""

from __future__ import annotations

import io

import pytest
from app_support import run_job


@pytest.fixture
def make_app(apps):
    return apps


def post(client, data: bytes, headers=None, **fields):
    form = {"video": (io.BytesIO(data), "clip.mp4"), **fields}
    return client.post("/api/analyze", data=form, content_type="multipart/form-data",
                       headers=headers or {})


def test_health_needs_the_token_when_one_is_set(make_app):
    client = make_app(api_token="s3cret").test_client()
    assert client.get("/api/health").status_code == 401
    answer = client.get("/api/health", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "ok"


@pytest.mark.parametrize(("origin", "refused"), [
    ("http://localhost", False),    # the page this server serves
    ("https://localhost", True),    # same host, another scheme: another origin
    ("http://localhost:8080", True),
    ("https://evil.example", True),
])
def test_the_origin_check_compares_the_scheme_too(make_app, video, origin, refused):
    client = make_app().test_client()  # the test client speaks http to "localhost"
    answer = post(client, video.read_bytes(), {"Origin": origin})
    assert (answer.status_code == 403) is refused, answer.get_json()


def test_json_answers_are_never_cached(make_app, video):
    app = make_app()
    client = app.test_client()
    job = run_job(app, video)
    for url in ("/api/health", "/api/model", "/api/jobs", f"/api/jobs/{job['id']}",
                f"/api/jobs/{job['id']}/result", f"/api/jobs/{job['id']}.json",
                f"/api/jobs/{'f' * 32}", "/metrics"):
        answer = client.get(url)
        assert "no-store" in answer.headers.get("Cache-Control", ""), url
    refused = post(client, b"not a video")
    assert refused.status_code == 415 and "no-store" in refused.headers["Cache-Control"]


def test_a_form_parser_limit_is_not_called_a_file_size(make_app, video):
    client = make_app().test_client()
    answer = post(client, video.read_bytes(), note="x" * 600_000)  # over Flask's 500 kB field
    assert answer.status_code == 413
    message = answer.get_json()["error"]
    assert "form" in message and "larger than" not in message

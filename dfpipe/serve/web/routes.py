"""The page and the JSON API, one blueprint.

API: POST /api/analyze (202 + job id), GET /api/jobs[/<id>[.csv|.json]], GET
/api/jobs/<id>/result, DELETE /api/jobs/<id>, face crops and heatmaps under
/api/jobs/<id>/faces/, GET /api/health, GET /api/model; GET /metrics for Prometheus. Every
API answer is JSON, errors included; a token, when configured, guards the API and /metrics.
Polling a job returns its status, progress and verdict only; the per-frame result has its own
URL.
"""

from __future__ import annotations

import hmac
import logging
import shutil
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.routing import BaseConverter

from dfpipe.serve.web.export import job_csv
from dfpipe.serve.web.jobs import QueueFull
from dfpipe.serve.web.redact import scrub
from dfpipe.serve.web.uploads import UploadError, check_video, display_name, new_id

log = logging.getLogger(__name__)

bp = Blueprint("dfpipe", __name__)
FIELD = "video"
CHUNK = 1024 * 1024
NO_STORE = "private, no-store"
# why check_video refused an upload, by the status it answered
CHECK_REASONS = {400: "empty_file", 415: "not_a_video", 422: "video_limits"}


class JobIdConverter(BaseConverter):
    """Only well-formed job ids reach a view, so an id can name a folder safely."""

    regex = r"[0-9a-f]{32}"


def service() -> Any:
    return current_app.extensions["dfpipe"]


def api_error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status, **extra}), status


def require_token(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse an API call without the configured token (Bearer or X-API-Token header)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = service().config.api_token
        if token:
            given = request.headers.get("X-API-Token", "")
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                service().metrics.refused("unauthorized")
                return api_error(401, "missing or wrong API token: send it as "
                                      "'Authorization: Bearer TOKEN'")
        return view(*args, **kwargs)

    return guarded


# -- pages ------------------------------------------------------------------------------------

@bp.get("/")
def index() -> str:
    return render_template("index.html", job_id="", max_mb=service().config.max_upload_mb)


@bp.get("/jobs/<jobid:job_id>")
def job_page(job_id: str) -> str:
    return render_template("index.html", job_id=job_id, max_mb=service().config.max_upload_mb)


@bp.get("/history")
def history() -> str:
    return render_template("history.html")


# -- API --------------------------------------------------------------------------------------

@bp.post("/api/analyze")
@require_token
def analyze() -> Any:
    svc = service()
    if svc.pool.full():  # before the body is parsed, saved or decoded
        return _busy()
    files = request.files.getlist(FIELD)
    if len(files) != 1:
        svc.metrics.refused("bad_request", upload=True)
        if not files:
            return api_error(400, f"no file: send the video as multipart/form-data field "
                                  f"'{FIELD}'")
        return api_error(400, "one video per request: send each file in its own request")
    upload = files[0]
    job_id = new_id()
    path = svc.uploads / f"{job_id}.upload"
    try:
        saved = _save_within(upload.stream, path, svc.config.max_upload_bytes)
    except OSError as exc:  # a full disk: refuse this upload, keep serving
        path.unlink(missing_ok=True)
        log.error("cannot store an upload: %s", exc)
        svc.metrics.refused("disk_full", upload=True)
        return api_error(507, f"the server has no room to store the upload "
                              f"({exc.strerror or exc}): try again later")
    if not saved:
        path.unlink(missing_ok=True)
        return _too_large()
    try:
        check_video(path, svc.config.max_frame_pixels, svc.config.max_duration_s)
    except UploadError as exc:
        path.unlink(missing_ok=True)
        svc.metrics.refused(CHECK_REASONS.get(exc.status, "not_a_video"), upload=True)
        return api_error(exc.status, exc.message)
    except Exception:  # noqa: BLE001 - a bad upload must never become a 500
        path.unlink(missing_ok=True)
        log.exception("upload check failed")
        svc.metrics.refused("not_a_video", upload=True)
        return api_error(422, "the file could not be checked as a video: upload a playable "
                              "video file")
    svc.store.create(job_id, display_name(upload.filename), path.stat().st_size)
    try:
        svc.pool.submit(job_id, path)
    except QueueFull:
        svc.store.delete(job_id)
        path.unlink(missing_ok=True)
        return _busy()
    svc.metrics.uploads.labels("accepted").inc()
    body = {"job_id": job_id, "status": "queued", **_links(job_id)}
    return jsonify(body), 202, {"Location": body["status_url"]}


def _busy() -> tuple[Response, int]:
    svc = service()
    svc.metrics.refused("busy", upload=True)
    retry = svc.config.retry_after_s
    response, status = api_error(
        503, f"the server is busy ({svc.pool.workers} running, {svc.pool.capacity} "
             f"waiting): try again in {retry} s", retry_after_s=retry)
    response.headers["Retry-After"] = str(retry)
    return response, status


def _too_large() -> tuple[Response, int]:
    mb = service().config.max_upload_mb
    service().metrics.refused("too_large", upload=True)
    return api_error(413, f"the file is larger than the {mb:g} MB limit: send a shorter or "
                          "more compressed video", max_upload_mb=mb)


def _save_within(stream: Any, path: Path, limit: int) -> bool:
    """Copy an upload to ``path`` chunk by chunk; False as soon as it passes ``limit`` bytes."""
    written = 0
    with open(path, "wb") as out:
        while chunk := stream.read(CHUNK):
            written += len(chunk)
            if written > limit:
                return False
            out.write(chunk)
    return True


def _with_result(job_id: str) -> tuple[dict[str, Any] | None, Any]:
    """The job, or the answer for one that does not exist (404) or has no result yet (409)."""
    job = _job_or_none(job_id)
    if job is None:
        return None, api_error(404, f"no job {job_id}")
    if job["result"] is None:
        return None, api_error(409, f"job {job_id} has no result yet (status {job['status']})")
    return job, None


@bp.get("/api/jobs")
@require_token
def list_jobs() -> Any:
    limit = request.args.get("limit", type=int) or service().config.history_limit
    jobs = service().store.list(min(max(1, limit), service().config.history_limit))
    return jsonify({"jobs": [_job_json(job) for job in jobs]})


@bp.get("/api/jobs/<jobid:job_id>")
@require_token
def get_job(job_id: str) -> Any:
    job = _job_or_none(job_id)
    if job is None:
        return api_error(404, f"no job {job_id}")
    return jsonify(_job_json(job))


@bp.get("/api/jobs/<jobid:job_id>/result")
@require_token
def job_result(job_id: str) -> Any:
    job, refusal = _with_result(job_id)
    if refusal is not None:
        return refusal
    return jsonify({"id": job_id, "status": job["status"], "result": _result_json(job)})


@bp.get("/api/jobs/<jobid:job_id>.json")
@require_token
def job_json_file(job_id: str) -> Any:
    job = _job_or_none(job_id)
    if job is None:
        return api_error(404, f"no job {job_id}")
    response = jsonify(_job_json(job, with_result=True))
    response.headers["Content-Disposition"] = f"attachment; filename=dfpipe-{job_id}.json"
    return response


@bp.get("/api/jobs/<jobid:job_id>.csv")
@require_token
def job_csv_file(job_id: str) -> Any:
    job, refusal = _with_result(job_id)
    if refusal is not None:
        return refusal
    return Response(job_csv(job), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=dfpipe-{job_id}.csv"})


@bp.delete("/api/jobs/<jobid:job_id>")
@require_token
def delete_job(job_id: str) -> Any:
    job = _job_or_none(job_id)
    if job is None:
        return api_error(404, f"no job {job_id}")
    if job["status"] in ("queued", "running"):
        return api_error(409, "the job is still running: delete it when it is finished")
    service().store.delete(job_id)
    shutil.rmtree(service().runner.job_dir(job_id), ignore_errors=True)
    return jsonify({"deleted": job_id})


@bp.get("/api/jobs/<jobid:job_id>/faces/<int:index>.jpg")
@require_token
def face_image(job_id: str, index: int) -> Any:
    return _artifact(job_id, f"face_{index:04d}.jpg")


@bp.get("/api/jobs/<jobid:job_id>/faces/<int:index>/heatmap.jpg")
@require_token
def heatmap_image(job_id: str, index: int) -> Any:
    return _artifact(job_id, f"cam_{index:04d}.jpg")


@bp.get("/api/health")
@require_token
def health() -> Any:
    svc = service()
    return jsonify({"status": "ok", "model_loaded": svc.analyzer is not None,
                    "model": svc.analyzer.describe()["name"], "jobs": svc.pool.stats(),
                    "auth": bool(svc.config.api_token)})


@bp.get("/metrics")
@require_token
def metrics() -> Any:
    """Prometheus text format; guarded by the token like the API."""
    svc = service()
    return Response(svc.metrics.render(), headers={"Content-Type": svc.metrics.content_type,
                                                   "Cache-Control": NO_STORE})


@bp.get("/api/model")
@require_token
def model_info() -> Any:
    svc = service()
    cfg = svc.config
    return jsonify({**scrub(svc.analyzer.describe()), "gradcam": cfg.gradcam,
                    "limits": {"max_upload_mb": cfg.max_upload_mb,
                               "max_frame_pixels": cfg.max_frame_pixels,
                               "max_duration_s": cfg.max_duration_s,
                               "max_frames": cfg.max_frames, "max_faces": cfg.max_faces,
                               "job_timeout_s": cfg.job_timeout_s,
                               "workers": cfg.workers, "queue_size": cfg.queue_size,
                               "keep_jobs": cfg.keep_jobs, "keep_days": cfg.keep_days}})


# -- helpers ----------------------------------------------------------------------------------

def _job_or_none(job_id: str) -> dict[str, Any] | None:
    return service().store.get(job_id)


def _artifact(job_id: str, name: str) -> Any:
    path = service().runner.job_dir(job_id) / name
    if not path.is_file():
        return api_error(404, f"no such image for job {job_id}")
    response = send_file(path, mimetype="image/jpeg", max_age=0, etag=False,
                         last_modified=None, conditional=False)
    response.headers["Cache-Control"] = NO_STORE
    return response


def _links(job_id: str) -> dict[str, str]:
    return {"status_url": url_for("dfpipe.get_job", job_id=job_id),
            "csv_url": url_for("dfpipe.job_csv_file", job_id=job_id),
            "json_url": url_for("dfpipe.job_json_file", job_id=job_id),
            "result_url": url_for("dfpipe.job_result", job_id=job_id),
            "page_url": url_for("dfpipe.job_page", job_id=job_id)}


def _fraction(job: dict[str, Any]) -> float:
    stage, done, total = job["stage"], job["done"], job["total"]
    part = done / total if total else 0.0
    heat = service().config.gradcam
    if stage == "done":
        return 1.0
    if stage == "frames":
        return round((0.9 if heat else 1.0) * part, 4)
    if stage == "heatmaps":
        return round(0.9 + 0.1 * part, 4)
    return 0.0


def _job_json(job: dict[str, Any], with_result: bool = False) -> dict[str, Any]:
    out = {k: job[k] for k in ("id", "filename", "size_bytes", "status", "message", "verdict",
                               "score", "created", "started", "verdict_at", "finished")}
    out["progress"] = {"stage": job["stage"], "done": job["done"], "total": job["total"],
                       "fraction": _fraction(job)}
    out["upload_to_verdict_s"] = (round(job["verdict_at"] - job["created"], 4)
                                  if job["verdict_at"] else None)
    out.update(_links(job["id"]))
    if with_result:
        out["result"] = _result_json(job)
    return out


def _result_json(job: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result with the URL of each face's crop and heatmap."""
    result = job.get("result")
    if result is not None:
        for face in result.get("faces", []):
            face["crop_url"] = url_for("dfpipe.face_image", job_id=job["id"],
                                       index=face["index"])
            face["heatmap_url"] = (url_for("dfpipe.heatmap_image", job_id=job["id"],
                                           index=face["index"])
                                   if face.get("heatmap") else None)
    return result

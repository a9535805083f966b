"""The Flask application factory: model, store, worker pool and routes wired together."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from dfpipe.core.errors import PipelineError
from dfpipe.serve.analyzer import Analyzer
from dfpipe.serve.web import guard, retention
from dfpipe.serve.web.config import WebConfig
from dfpipe.serve.web.instancelock import InstanceLock
from dfpipe.serve.web.jobs import JobPool, JobRunner
from dfpipe.serve.web.metrics import Metrics
from dfpipe.serve.web.records import read_records, remove_partial_records
from dfpipe.serve.web.routes import NO_STORE, JobIdConverter, bp
from dfpipe.serve.web.store import JobStore

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "object-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
}


@dataclass
class Service:
    """What the views need, kept in ``app.extensions['dfpipe']``."""

    config: WebConfig
    analyzer: Analyzer
    store: JobStore
    runner: JobRunner
    pool: JobPool
    uploads: Path
    lock: InstanceLock
    metrics: Metrics

    def shutdown(self) -> None:
        """Stop the workers (tests, SIGTERM, Ctrl+C): a running analysis fails with a message,
        heatmaps being drawn are dropped, then another server may use the instance folder."""
        self.runner.stopping.set()  # a running analysis fails at its next progress report
        self.pool.shutdown()
        self.runner.shutdown()
        self.lock.release()


def create_app(config: WebConfig | dict[str, Any] | None = None,
               analyzer: Analyzer | None = None, model_load_s: float | None = None) -> Flask:
    """Build the app; the model is loaded here once (or ``analyzer`` is reused as given).

    Only one server may use an instance folder (a second one is refused). Jobs left
    unfinished by a previous process are closed with a message, and the uploads and partial
    images it left behind are deleted; finished results are served from the SQLite store as
    before, within the retention limits. ``model_load_s``: how long loading ``analyzer`` took,
    for the metrics (measured here when the model is loaded here).
    """
    cfg = config if isinstance(config, WebConfig) else WebConfig.from_mapping(config)
    if analyzer is None:
        if cfg.model is None:
            raise PipelineError("no model given: pass --model models/xception_best.h5")
        start = time.perf_counter()
        analyzer = Analyzer.load(cfg.model)
        model_load_s = time.perf_counter() - start
    metrics = Metrics()
    if model_load_s is not None:
        metrics.model_load_seconds.set(model_load_s)
    instance = cfg.instance.resolve()
    lock = InstanceLock(instance)
    try:
        store, runner, pool, uploads = _start(cfg, analyzer, instance)
    except BaseException:
        lock.release()
        raise

    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC),
                instance_path=str(instance))
    app.config.update(MAX_CONTENT_LENGTH=cfg.max_form_bytes, DEBUG=False,
                      PROPAGATE_EXCEPTIONS=False)
    app.url_map.converters["jobid"] = JobIdConverter
    runner.metrics = metrics
    metrics.watch_pool(pool.stats)
    app.extensions["dfpipe"] = Service(cfg, analyzer, store, runner, pool, uploads, lock,
                                       metrics)
    guard.install(app, cfg.host, cfg.allowed_hosts)
    app.register_blueprint(bp)
    _register_errors(app, cfg)

    @app.after_request
    def secure(response: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/") or response.mimetype == "application/json":
            response.headers["Cache-Control"] = NO_STORE  # results are private, never cached
        return response

    return app


def _start(cfg: WebConfig, analyzer: Analyzer,
           instance: Path) -> tuple[JobStore, JobRunner, JobPool, Path]:
    """Clean up after a previous process, apply retention, start the workers. A rebuilt store
    gets its jobs back from their folders and no orphan sweep (it would delete them all)."""
    uploads = instance / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    for leftover in uploads.glob("*.upload"):
        leftover.unlink(missing_ok=True)
    store = JobStore(instance / "jobs.sqlite3")
    artifacts = instance / "jobs"
    remove_partial_records(artifacts)
    if store.rebuilt:  # new, empty or corrupt: the job folders are the truth, none is deleted
        restored = sum(store.restore(job) for job in read_records(artifacts))
        if restored:
            log.info("restored %d job(s) into the new store from their folders", restored)
    cut = store.unfinished_with_verdict()
    closed = store.close_unfinished()
    if closed:
        log.info("closed %d job(s) left unfinished by a previous run", closed)
    if not store.rebuilt:
        retention.sweep_orphans(store, artifacts)
    retention.enforce(store, artifacts, cfg.keep_jobs, cfg.keep_days)
    runner = JobRunner(analyzer, store, artifacts, cfg.gradcam, cfg.gradcam_batch, cfg.limits)
    for job_id in cut:  # killed while drawing heatmaps: drop the partial ones
        runner.close_heatmaps(job_id, "the server restarted while drawing them")
    runner.after_job = lambda: retention.enforce(store, artifacts, cfg.keep_jobs,
                                                 cfg.keep_days)
    pool = JobPool(runner, cfg.workers, cfg.queue_size,
                   analyzer.warm_up if cfg.warm_up else None)
    runner.busy = pool.busy
    return store, runner, pool, uploads


def server_options(cfg: WebConfig) -> dict[str, Any]:
    """waitress settings that go with the app: its body limit follows ``max_upload_mb``; poll()
    instead of select(), which cannot watch descriptors above 1023 (``connection_limit``)."""
    return {"max_request_body_size": cfg.max_body_bytes,
            "connection_limit": cfg.connection_limit,
            "channel_timeout": cfg.channel_timeout_s,
            "cleanup_interval": max(1, min(30, cfg.channel_timeout_s // 2)),
            "asyncore_use_poll": True}


def _register_errors(app: Flask, cfg: WebConfig) -> None:
    def wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(413)
    def too_large(exc: HTTPException) -> Any:
        upload = request.path == "/api/analyze"
        declared = request.content_length
        if declared is not None and declared <= cfg.max_form_bytes:
            # the body is within the limit: the form parser refused its shape, not its size
            app.extensions["dfpipe"].metrics.refused("form_limit", upload=upload)
            return jsonify({"error": "the form has too many parts or a text field that is too "
                                     "large: send the video alone, as the multipart field "
                                     "'video'", "status": 413}), 413
        app.extensions["dfpipe"].metrics.refused("too_large", upload=upload)
        return jsonify({"error": f"the file is larger than the {cfg.max_upload_mb:g} MB limit: "
                                 "send a shorter or more compressed video",
                        "status": 413, "max_upload_mb": cfg.max_upload_mb}), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if not wants_json():
            return exc
        return jsonify({"error": exc.description, "status": exc.code}), exc.code

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error; the server logs have the details",
                        "status": 500}), 500

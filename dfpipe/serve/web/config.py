"""The web app's settings and their defaults, in one place (app.py's options read them)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dfpipe.serve.frames import DEFAULT_MAX_FACES, DEFAULT_MAX_FRAMES, Limits
from dfpipe.serve.web.retention import DEFAULT_KEEP_DAYS, DEFAULT_KEEP_JOBS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_THREADS = 8
# waitress keeps a half-sent request in its event loop (a socket, not a thread): a high limit
# costs descriptors only, and idle channels go after the timeout. waitress' own 100 is what
# 110 slow clients exhaust, locking everyone else out.
DEFAULT_CONNECTION_LIMIT = 1000
DEFAULT_CHANNEL_TIMEOUT_S = 30
FORM_SLACK = 64 * 1024
SERVER_SLACK = 1024 * 1024


@dataclass(frozen=True)
class WebConfig:
    """What the server accepts and how much work it takes on at once.

    ``max_frame_pixels`` refuses frames larger than 8K UHD (7680x4320) before any is decoded
    in full: one such frame already takes 100 MB as RGB. ``max_duration_s`` refuses videos
    announcing a longer running time, so one upload cannot hold the worker for an hour.
    ``warm_up`` builds each worker's face detector and traces the model at start-up, so the
    first upload is not charged for it.

    The header can lie, so the work per upload is also bounded by what is decoded:
    ``max_frames`` frames at most (the rest is not read, the result says so), ``max_faces``
    crops scored, every decoded frame checked against ``max_frame_pixels``, and
    ``job_timeout_s`` of wall clock per analysis. ``host`` (the address served) and
    ``allowed_hosts`` are the names requests may carry in ``Host``. ``keep_jobs`` and
    ``keep_days`` bound how many finished jobs, and for how long, are kept.
    ``connection_limit`` and ``channel_timeout_s`` are waitress' (open connections at most;
    seconds without a byte before a connection is closed), so slow clients cannot lock others out.
    """

    model: Path | None = None
    instance: Path = Path("instance")
    max_upload_mb: float = 200.0
    max_frame_pixels: int = 7680 * 4320
    max_duration_s: float = 600.0
    workers: int = 1
    queue_size: int = 8
    retry_after_s: int = 15
    api_token: str | None = None
    gradcam: bool = True
    warm_up: bool = True
    gradcam_batch: int = 8
    history_limit: int = 200
    max_frames: int = DEFAULT_MAX_FRAMES
    max_faces: int = DEFAULT_MAX_FACES
    job_timeout_s: float = 600.0
    host: str = DEFAULT_HOST
    allowed_hosts: tuple[str, ...] = ()
    keep_jobs: int = DEFAULT_KEEP_JOBS
    keep_days: float = DEFAULT_KEEP_DAYS
    connection_limit: int = DEFAULT_CONNECTION_LIMIT
    channel_timeout_s: int = DEFAULT_CHANNEL_TIMEOUT_S

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> WebConfig:
        """Build from a dict (keys as the fields, any case); unknown keys are refused."""
        data = {str(k).lower(): v for k, v in (data or {}).items()}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown web settings: {', '.join(unknown)}")
        if "instance" in data:
            data["instance"] = Path(data["instance"])
        if data.get("model") is not None:
            data["model"] = Path(data["model"])
        if "allowed_hosts" in data:
            data["allowed_hosts"] = tuple(data["allowed_hosts"] or ())
        cfg = cls(**data)
        if cfg.workers < 1 or cfg.queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        positive = ("max_upload_mb", "max_frame_pixels", "max_duration_s", "max_frames",
                    "max_faces", "job_timeout_s", "keep_jobs", "keep_days", "connection_limit",
                    "channel_timeout_s")
        bad = [name for name in positive if getattr(cfg, name) <= 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be > 0")
        return cfg

    @property
    def limits(self) -> Limits:
        """The per-video limits of one analysis."""
        return Limits(self.max_frames, self.max_faces, self.max_frame_pixels,
                      self.job_timeout_s)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_form_bytes(self) -> int:
        """The request body the app reads: the file plus room for the multipart framing."""
        return self.max_upload_bytes + FORM_SLACK

    @property
    def max_body_bytes(self) -> int:
        """The body the WSGI server accepts before the app sees it. A little above the app's
        limit, so most oversized uploads get the app's JSON 413; a body declared larger is
        refused by the server before a byte of it is read."""
        return self.max_upload_bytes + SERVER_SLACK

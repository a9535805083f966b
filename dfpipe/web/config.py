"""The web app's settings and their defaults, in one place (app.py's options read them)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_THREADS = 8


@dataclass(frozen=True)
class WebConfig:
    """What the server accepts and how much work it takes on at once.

    ``max_frame_pixels`` refuses frames larger than 8K UHD (7680x4320) before any is decoded
    in full: one such frame already takes 100 MB as RGB. ``max_duration_s`` refuses videos
    announcing a longer running time, so one upload cannot hold the worker for an hour.
    ``warm_up`` builds each worker's face detector and traces the model at start-up, so the
    first upload is not charged for it.
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
        cfg = cls(**data)
        if cfg.workers < 1 or cfg.queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        if cfg.max_upload_mb <= 0 or cfg.max_frame_pixels <= 0 or cfg.max_duration_s <= 0:
            raise ValueError("max_upload_mb, max_frame_pixels and max_duration_s must be > 0")
        return cfg

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

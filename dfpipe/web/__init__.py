"""The web app: upload page and JSON API over :mod:`dfpipe.inference` (see app.py)."""

from .app import create_app
from .config import WebConfig

__all__ = ["WebConfig", "create_app"]

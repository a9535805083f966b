"""The web app: upload page and JSON API over :mod:`dfpipe.serve.analyzer` (see app.py)."""

from dfpipe.serve.web.app import create_app
from dfpipe.serve.web.config import WebConfig

__all__ = ["WebConfig", "create_app"]

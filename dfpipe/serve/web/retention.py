"""How long results stay: the newest ``keep_jobs`` finished jobs, none older than ``keep_days``.

Applied when the server starts and after every job. At start, job folders that no finished
job owns (a job killed mid-analysis, a job deleted while the server was down) are removed,
so partial face crops are never served after a restart.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from dfpipe.serve.web.store import JobStore
from dfpipe.serve.web.uploads import JOB_ID

log = logging.getLogger(__name__)

DEFAULT_KEEP_JOBS = 200
DEFAULT_KEEP_DAYS = 30.0
DAY_S = 86400.0


def enforce(store: JobStore, artifacts: Path, keep_jobs: int, keep_days: float,
            now: float | None = None) -> int:
    """Delete finished jobs beyond the limits (rows and folders); returns how many."""
    now = time.time() if now is None else now
    expired = store.expired(keep_jobs, now - keep_days * DAY_S)
    for job_id in expired:
        store.delete(job_id)
        shutil.rmtree(Path(artifacts) / job_id, ignore_errors=True)
    if expired:
        log.info("retention: deleted %d old job(s)", len(expired))
    return len(expired)


def sweep_orphans(store: JobStore, artifacts: Path) -> int:
    """Remove job folders without a job that may own files (missing, or closed as error)."""
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        return 0
    owners = store.with_files()
    removed = 0
    for folder in artifacts.iterdir():
        if folder.is_dir() and JOB_ID.match(folder.name) and folder.name not in owners:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d job folder(s) no finished job owns", removed)
    return removed

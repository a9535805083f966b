"""Each finished job's row, kept beside its images as ``result.json``, so the job store can be
rebuilt from the job folders when it is lost or corrupt. Written atomically: a kill leaves the
previous record or the new one, never half of one."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfpipe.serve.web.uploads import JOB_ID

log = logging.getLogger(__name__)

RECORD = "result.json"


def write_record(folder: Path, job: dict[str, Any]) -> Path:
    """Write ``job`` (a store row, its result included) to ``folder/result.json``."""
    path = Path(folder) / RECORD
    tmp = path.with_name(f".{RECORD}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"job": job}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_records(artifacts: Path) -> Iterator[dict[str, Any]]:
    """The job rows recorded in the job folders under ``artifacts``; unreadable ones skipped."""
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        return
    for folder in sorted(artifacts.iterdir()):
        path = folder / RECORD
        if not (JOB_ID.match(folder.name) and path.is_file()):
            continue
        try:
            job = json.loads(path.read_text(encoding="utf-8"))["job"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("job %s: its %s cannot be read (%s); not restored", folder.name,
                        RECORD, exc)
            continue
        if isinstance(job, dict) and job.get("id") == folder.name:
            yield job


def remove_partial_records(artifacts: Path) -> int:
    """Delete the temporary files of records a killed process was writing; returns how many."""
    stale = list(Path(artifacts).glob(f"*/.{RECORD}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)

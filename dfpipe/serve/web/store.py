"""Jobs and their results in SQLite, so a restart loses no finished analysis.

One row per job; the result is stored as JSON text. A connection per call keeps the store
safe to use from the request threads and the job workers at once (WAL journal: readers
never wait for the writer).

A store that cannot be read (a corrupt file) is moved aside with its ``-wal``/``-shm`` files
and a one-line warning, and an empty one is started; :attr:`JobStore.rebuilt` then tells the
server to restore the jobs from their folders (``result.json``) and to delete nothing because
the store looked empty. A missing or 0-byte file is treated the same way.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

COLUMNS: tuple[str, ...] = (
    "id", "filename", "size_bytes", "status", "stage", "done", "total", "message", "verdict",
    "score", "created", "started", "verdict_at", "finished", "result")
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    score REAL,
    created REAL NOT NULL,
    started REAL,
    verdict_at REAL,
    finished REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""
UNFINISHED = ("queued", "running")
SIDE_FILES = ("-wal", "-shm")
SQLITE_HEADER = b"SQLite format 3\x00"

log = logging.getLogger(__name__)


class JobStore:
    """Create, update, read and list jobs in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.rebuilt = not self.path.exists() or self.path.stat().st_size == 0
        self.moved_to: Path | None = None
        try:
            if not self.rebuilt and not _has_sqlite_header(self.path):
                # moved before SQLite opens it: it would drop a -wal it cannot make sense of
                raise sqlite3.DatabaseError("file is not a database")
            self._open()
        except sqlite3.DatabaseError as exc:
            self.moved_to = self._move_aside(exc)
            self.rebuilt = True
            self._open()

    def _open(self) -> None:
        """Create the schema, and check the file is a sound SQLite database."""
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            check = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity check: {'; '.join(check[:3])}")

    def _move_aside(self, exc: Exception) -> Path:
        """Rename the store and its WAL/shared-memory files out of the way, keeping them."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", *SIDE_FILES):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.replace(aside.with_name(aside.name + suffix))
        log.warning("job store %s cannot be read (%s): moved aside to %s; rebuilding it from "
                    "the job folders", self.path, exc, aside.name)
        return aside

    def restore(self, job: dict[str, Any]) -> bool:
        """Insert a job recorded in its folder, unless a row with its id exists."""
        row = {c: job.get(c) for c in COLUMNS}
        if not row["id"] or row["created"] is None:
            return False
        if row["result"] is not None:
            row["result"] = json.dumps(row["result"])
        names = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        try:
            with self._lock, closing(self._connect()) as db, db:
                return db.execute(f"INSERT OR IGNORE INTO jobs ({names}) VALUES ({marks})",
                                  tuple(row.values())).rowcount > 0
        except sqlite3.IntegrityError:  # a record missing a required column
            return False

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def create(self, job_id: str, filename: str, size_bytes: int) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("INSERT INTO jobs (id, filename, size_bytes, status, stage, created) "
                       "VALUES (?, ?, ?, 'queued', 'queued', ?)",
                       (job_id, filename, size_bytes, time.time()))

    def update(self, job_id: str, **values: Any) -> None:
        """Set columns of one job; ``result`` is given as a dict and stored as JSON."""
        bad = set(values) - set(COLUMNS[1:])
        if bad:
            raise KeyError(f"unknown job columns: {sorted(bad)}")
        if "result" in values and values["result"] is not None:
            values["result"] = json.dumps(values["result"])
        names = ", ".join(f"{k} = ?" for k in values)
        with self._lock, closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*values.values(), job_id))

    def get(self, job_id: str) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest jobs first, without their full results."""
        cols = ", ".join(c for c in COLUMNS if c != "result")
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {cols} FROM jobs ORDER BY created DESC LIMIT ?",
                              (int(limit),)).fetchall()
        return [dict(r) for r in rows]

    def delete(self, job_id: str) -> bool:
        with self._lock, closing(self._connect()) as db, db:
            return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    def expired(self, keep: int, before: float) -> list[str]:
        """Finished jobs beyond the newest ``keep``, or created before ``before``."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status NOT IN (?, ?) AND (created < ? OR id NOT IN "
                "(SELECT id FROM jobs WHERE status NOT IN (?, ?) ORDER BY created DESC "
                "LIMIT ?))", (*UNFINISHED, before, *UNFINISHED, max(0, int(keep)))).fetchall()
        return [r["id"] for r in rows]

    def with_files(self) -> set[str]:
        """Ids of the jobs that may own a folder of images (all but failed ones)."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id FROM jobs WHERE status != 'error'").fetchall()
        return {r["id"] for r in rows}

    def unfinished_with_verdict(self) -> list[str]:
        """Jobs left drawing heatmaps (their verdict stored) by a process that ended."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id FROM jobs WHERE status IN (?, ?) AND verdict IS NOT "
                              "NULL", UNFINISHED).fetchall()
        return [r["id"] for r in rows]

    def close_unfinished(self) -> int:
        """After a restart: jobs left queued or running can never finish; say so in each.

        A job whose verdict was already stored (only the heatmaps were missing) keeps it.
        """
        now = time.time()
        with self._lock, closing(self._connect()) as db, db:
            kept = db.execute(
                "UPDATE jobs SET status = 'done', stage = 'done', finished = ?, message = "
                "'the server restarted while drawing heatmaps; they are missing' "
                "WHERE status IN (?, ?) AND verdict IS NOT NULL", (now, *UNFINISHED)).rowcount
            lost = db.execute(
                "UPDATE jobs SET status = 'error', stage = 'error', finished = ?, message = "
                "'the server restarted before this video was analysed: upload it again' "
                "WHERE status IN (?, ?)", (now, *UNFINISHED)).rowcount
        return kept + lost


def _has_sqlite_header(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _job(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["result"] = json.loads(job["result"]) if job.get("result") else None
    return job

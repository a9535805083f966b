"""One JSON line per processed video: the record later stages and the monitor read.

Lines are appended with flush+fsync after the video's crops are in place, so a record
means "finished"; a half-written last line (a killed run) is ignored on reading.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_GLOB = "manifest*.jsonl"


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """File name of the manifest for a shard (K, N), or the single-run manifest."""
    if shard is None or shard[1] == 1:
        return "manifest.jsonl"
    k, n = shard
    return f"manifest.shard-{k}-of-{n}.jsonl"


def run_file_name(shard: tuple[int, int] | None = None) -> str:
    """Name of the run file (total, start, finish) written beside ``manifest_name(shard)``."""
    return manifest_name(shard).replace("manifest", "run", 1).replace(".jsonl", ".json")


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record durably; a crash mid-write leaves at most a partial last line."""
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the complete records of one manifest, skipping a torn or corrupt line."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                log.debug("%s:%d is still being written; skipped", path, lineno)
                continue
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:  # bad JSON, or a UTF-8 sequence cut by a crash
                log.warning("%s:%d is not valid JSON; skipped", path, lineno)


def manifest_paths(root: Path) -> list[Path]:
    """All manifests (every shard) written under a preprocess output folder."""
    return sorted(Path(root).glob(MANIFEST_GLOB))


def read_manifests(root: Path) -> list[dict[str, Any]]:
    """Every finished video record under ``root``; the latest record wins per video id
    (by its ``finished`` time across manifests, by line order within one)."""
    latest: dict[str, dict[str, Any]] = {}
    for path in manifest_paths(root):
        for rec in iter_records(path):
            old = latest.get(rec["video_id"])
            if old is None or _finished(rec) >= _finished(old):
                latest[rec["video_id"]] = rec
    return list(latest.values())


def _finished(rec: dict[str, Any]) -> float:
    try:
        return float(rec.get("finished") or 0.0)
    except (TypeError, ValueError):
        return 0.0

"""Live progress of long preprocessing and training runs, read only from what the stages write.

Preprocessing: every manifest (one per shard, see ``dfpipe.core.manifest``) and the run file each
shard writes atomically when it starts (``run.json`` or ``run.shard-K-of-N.json``: ``total``,
``shard``, ``started``, ``finished``). Training: the Keras CSV log and the ``training_done.json``
marker. The monitor adds nothing to a stage's hot path: it only reads, parses just the manifest
lines appended since its last poll, and leaves a line being written for the next poll.
Snapshots are computed by pure functions of the records and log rows (``now`` is a
parameter), so they can be tested exactly.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dfpipe.core.files import TRAINING_DONE, TRAINING_LOG
from dfpipe.core.manifest import MANIFEST_GLOB, manifest_paths
from dfpipe.core.traininglog import parse_training_log
from dfpipe.monitor.progress import Progress, VideoDone, summarize
from dfpipe.monitor.tail import ManifestTail

log = logging.getLogger(__name__)

DEFAULT_WINDOW_MIN = 5.0
RUN_GLOB = "run*.json"

SHARD_NAME = re.compile(r"^shard-(\d+)-of-(\d+)$")
_RUN_RE = re.compile(r"^run(?:\.(.+))?\.json$")
_MANIFEST_RE = re.compile(r"^manifest(?:\.(.+))?\.jsonl$")


@dataclass
class PreprocessSnapshot:
    """Progress of a preprocess output folder: all shards combined, and each shard."""

    folder: str
    now: float
    window_s: float
    overall: Progress
    shards: list[Progress]
    shards_seen: int
    shards_expected: int
    done: bool
    kind: str = "preprocess"


@dataclass
class TrainingSnapshot:
    """Where a training run stands, from its CSV log."""

    folder: str
    now: float
    epochs_completed: int
    columns: list[str]
    latest: dict[str, float | None]
    best_metric: str | None
    best_epoch: int | None
    best: dict[str, float | None]
    updated_ago_s: float | None
    done: bool
    done_info: dict[str, Any]
    kind: str = "training"


@dataclass
class WaitingSnapshot:
    """Nothing to show yet: the folder is missing, or holds no manifest or training log."""

    folder: str
    now: float
    reason: str
    done: bool = False
    kind: str = "waiting"


Snapshot = PreprocessSnapshot | TrainingSnapshot | WaitingSnapshot


def _expected_shards(names: Sequence[str]) -> int:
    """How many shards the names announce: N for each ``shard-K-of-N`` family, 1 per other."""
    families: set[int] = set()
    others = 0
    for name in names:
        m = SHARD_NAME.match(name)
        if m:
            families.add(int(m.group(2)))
        else:
            others += 1
    return sum(families) + others


def preprocess_snapshot(
    folder: str,
    shards: Sequence[tuple[str, Sequence[VideoDone], dict[str, Any] | None]],
    now: float,
    window_s: float,
) -> PreprocessSnapshot:
    """Combine every shard's (name, videos, run file) into one view, keeping a line per shard."""
    per_shard = [summarize(name, videos, run, now, window_s) for name, videos, run in shards]
    totals = [p.total for p in per_shard]
    starts = [p.started for p in per_shard if p.started is not None]
    ends = [p.finished for p in per_shard]
    combined_run = {
        "total": sum(totals) if totals and None not in totals else None,
        "started": min(starts) if starts else None,
        "finished": max(ends) if ends and None not in ends else None,
    } if any(run for _, _, run in shards) else None
    expected = _expected_shards([p.name for p in per_shard])
    if combined_run and len(per_shard) < expected:
        combined_run.update(total=None, finished=None)  # the missing shards' share is unknown
    all_videos = [v for _, videos, _ in shards for v in videos]
    overall = summarize("all", all_videos, combined_run, now, window_s)
    everything_done = bool(per_shard) and len(per_shard) >= expected and all(
        p.complete for p in per_shard
    )
    overall.complete = everything_done
    if everything_done:
        overall.eta_s = 0.0
    elif len(per_shard) > 1:  # each shard must finish its own share: the slowest decides
        etas = [p.eta_s for p in per_shard if not p.complete]
        overall.eta_s = max(etas) if etas and None not in etas else None
    return PreprocessSnapshot(
        folder=folder, now=now, window_s=window_s, overall=overall,
        shards=per_shard if max(len(per_shard), expected) > 1 else [],
        shards_seen=len(per_shard), shards_expected=max(expected, len(per_shard)),
        done=everything_done,
    )


def _best_metric(columns: Sequence[str]) -> tuple[str, str] | None:
    """Which column says "best" and in which direction: val_auc up, else val_loss down."""
    if "val_auc" in columns:
        return "val_auc", "max"
    if "val_loss" in columns:
        return "val_loss", "min"
    return None


def training_snapshot(
    folder: str,
    rows: Sequence[dict[str, float | None]],
    now: float,
    log_mtime: float | None,
    done_info: dict[str, Any] | None,
) -> TrainingSnapshot:
    """Epoch, latest metrics and the best epoch so far from the log rows."""
    columns = list(rows[0].keys()) if rows else []
    latest = dict(rows[-1]) if rows else {}
    last_epoch = latest.get("epoch")
    epochs = int(last_epoch) + 1 if last_epoch is not None else len(rows)
    best_metric, best_epoch, best = None, None, {}
    rule = _best_metric(columns)
    scored = [r for r in rows if rule and r.get(rule[0]) is not None]
    if rule and scored:
        best_metric, mode = rule
        pick = max if mode == "max" else min
        row = pick(scored, key=lambda r: r[best_metric])
        best = dict(row)
        best_epoch = int(row["epoch"]) + 1 if row.get("epoch") is not None else None
    return TrainingSnapshot(
        folder=folder, now=now, epochs_completed=epochs, columns=columns, latest=latest,
        best_metric=best_metric, best_epoch=best_epoch, best=best,
        updated_ago_s=None if log_mtime is None else max(now - log_mtime, 0.0),
        done=done_info is not None, done_info=done_info or {},
    )


# --------------------------------------------------------------------------- reading


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object file, or None when absent or unreadable right now."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _shard_files(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """Shard name ('' for a single run) -> (manifest, run file), either possibly absent."""
    found: dict[str, list[Path | None]] = {}
    for path in manifest_paths(folder):
        m = _MANIFEST_RE.match(path.name)
        name = (m.group(1) or "") if m else path.stem
        found.setdefault(name, [None, None])[0] = path
    for path in sorted(folder.glob(RUN_GLOB)):
        m = _RUN_RE.match(path.name)
        if m:
            found.setdefault(m.group(1) or "", [None, None])[1] = path
    return {name: (pair[0], pair[1]) for name, pair in sorted(found.items())}


def detect_kind(folder: Path) -> str:
    """'preprocess', 'training', 'missing' or 'empty', from the files the stages write."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    if any(folder.glob(MANIFEST_GLOB)) or any(
        _RUN_RE.match(p.name) for p in folder.glob(RUN_GLOB)
    ):
        return "preprocess"
    if (folder / TRAINING_LOG).exists() or (folder / TRAINING_DONE).exists():
        return "training"
    return "empty"


def take_snapshot(
    folder: Path,
    now: float | None = None,
    window_s: float = DEFAULT_WINDOW_MIN * 60,
    tail: ManifestTail | None = None,
) -> Snapshot:
    """Read the folder and describe where its run stands; pass one ``tail`` between polls."""
    folder = Path(folder)
    now = time.time() if now is None else now
    tail = tail or ManifestTail()
    kind = detect_kind(folder)
    if kind == "preprocess":
        shards = []
        for name, (manifest, run_path) in _shard_files(folder).items():
            videos = tail.videos(manifest) if manifest else []
            run = _read_json(run_path) if run_path else None
            shards.append((name or "unsharded", videos, run))
        return preprocess_snapshot(str(folder), shards, now, window_s)
    if kind == "training":
        log_path = folder / TRAINING_LOG
        try:
            text = log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        done_path = folder / TRAINING_DONE
        done_info = (_read_json(done_path) or {}) if done_path.exists() else None
        return training_snapshot(
            str(folder), parse_training_log(text), now, _mtime(log_path), done_info
        )
    reason = "folder missing" if kind == "missing" else "no manifest or training log yet"
    return WaitingSnapshot(folder=str(folder), now=now, reason=reason)


def snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as plain JSON-ready data (what ``--json`` prints)."""
    return asdict(snapshot)

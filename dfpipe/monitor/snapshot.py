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

import csv
import io
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dfpipe.core.manifest import MANIFEST_GLOB, manifest_paths
from dfpipe.models.saving import TRAINING_DONE, TRAINING_LOG

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
DEFAULT_WINDOW_MIN = 5.0
RUN_GLOB = "run*.json"
MAX_REASONS_SHOWN = 5

_SHARD_RE = re.compile(r"^shard-(\d+)-of-(\d+)$")
_RUN_RE = re.compile(r"^run(?:\.(.+))?\.json$")
_MANIFEST_RE = re.compile(r"^manifest(?:\.(.+))?\.jsonl$")


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class VideoDone:
    """The few fields of one manifest record that progress needs."""

    video_id: str
    status: str
    reason: str
    faces_saved: int
    frames_sampled: int
    seconds: float
    finished: float | None


@dataclass
class Progress:
    """Counts, throughput and time left of one shard, or of all shards together."""

    name: str
    done: int = 0
    total: int | None = None
    ok: int = 0
    no_face: int = 0
    error: int = 0
    faces_saved: int = 0
    frames_sampled: int = 0
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    last_video_at: float | None = None
    videos_per_min_recent: float | None = None
    videos_per_min_overall: float | None = None
    frames_per_s_recent: float | None = None
    frames_per_s_overall: float | None = None
    eta_s: float | None = None
    complete: bool = False


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


def _num(value: Any, default: float = 0.0) -> float:
    """A finite float from a record field, or ``default`` for anything else."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


_COUNT_RE = re.compile(r"(?<![\w.])\d+(?![\w.])")


def reason_of(record: dict[str, Any]) -> str:
    """A record's message as a reason shared by many videos: its own path and counts dropped.

    ("no face ... in 32 sampled frames" and "... in 17 sampled frames" are one reason.)
    """
    message = str(record.get("message") or "")
    for key in ("source", "relpath"):
        value = record.get(key)
        if isinstance(value, str) and value:
            message = message.replace(value, "<video>")
    return _COUNT_RE.sub("N", message).strip() or "(no message)"


def videos_from_records(
    records: Sequence[dict[str, Any]], mtime: float | None
) -> list[VideoDone]:
    """One entry per video (the latest record wins), each with a finish time.

    Records written without ``finished`` get one estimated backwards from the manifest's
    modification time (the last line's), subtracting each later video's ``seconds``.
    """
    times: list[float | None] = [None] * len(records)
    cursor = mtime
    for i in range(len(records) - 1, -1, -1):
        rec = records[i]
        own = rec.get("finished")
        t = _num(own) if isinstance(own, (int, float)) else cursor
        times[i] = t
        cursor = None if t is None else t - _num(rec.get("seconds"))
    latest: dict[str, VideoDone] = {}
    for rec, t in zip(records, times, strict=True):
        vid = str(rec.get("video_id", ""))
        latest.pop(vid, None)
        latest[vid] = VideoDone(
            video_id=vid,
            status=str(rec.get("status", "error")),
            reason=reason_of(rec),
            faces_saved=int(_num(rec.get("faces_saved"))),
            frames_sampled=int(_num(rec.get("frames_sampled"))),
            seconds=_num(rec.get("seconds")),
            finished=t,
        )
    return list(latest.values())


def _rates(
    videos: Iterable[VideoDone], start: float | None, end: float, window_s: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """(videos/min recent, videos/min overall, frames/s recent, frames/s overall).

    Only videos finished since ``start`` count (a resumed run's earlier work is not this run's
    speed); "recent" is the last ``window_s`` seconds before ``end``, or less at a run's start.
    """
    timed = [v for v in videos if v.finished is not None]
    if start is None:
        if not timed:
            return None, None, None, None
        start = min(v.finished - v.seconds for v in timed)
    timed = [v for v in timed if v.finished >= start]
    span = end - start
    if span <= 0:
        return None, None, None, None
    recent_from = max(end - window_s, start)
    recent = [v for v in timed if v.finished > recent_from]
    recent_span = end - recent_from
    vpm = len(timed) / span * 60
    fps = sum(v.frames_sampled for v in timed) / span
    if recent_span <= 0:
        return None, vpm, None, fps
    return (
        len(recent) / recent_span * 60,
        vpm,
        sum(v.frames_sampled for v in recent) / recent_span,
        fps,
    )


def summarize(
    name: str,
    videos: Sequence[VideoDone],
    run: dict[str, Any] | None,
    now: float,
    window_s: float,
) -> Progress:
    """Counts, reasons, throughput and time left of one set of videos and its run file."""
    run = run or {}
    p = Progress(name=name, done=len(videos))
    status = Counter(v.status for v in videos)
    p.ok, p.no_face, p.error = status["ok"], status["no_face"], status["error"]
    p.faces_saved = sum(v.faces_saved for v in videos)
    p.frames_sampled = sum(v.frames_sampled for v in videos)
    for kind in ("no_face", "error"):
        reasons = Counter(v.reason for v in videos if v.status == kind)
        if reasons:
            p.reasons[kind] = dict(reasons.most_common())
    total = run.get("total")
    p.total = int(total) if isinstance(total, (int, float)) else None
    started, finished = run.get("started"), run.get("finished")
    p.started = float(started) if isinstance(started, (int, float)) else None
    p.finished = float(finished) if isinstance(finished, (int, float)) else None
    times = [v.finished for v in videos if v.finished is not None]
    p.last_video_at = max(times) if times else None
    end = p.finished if p.finished is not None else now
    (p.videos_per_min_recent, p.videos_per_min_overall,
     p.frames_per_s_recent, p.frames_per_s_overall) = _rates(videos, p.started, end, window_s)
    p.complete = p.finished is not None or (p.total is not None and p.done >= p.total)
    if p.complete:
        p.eta_s = 0.0
    elif p.total is not None:
        rate = p.videos_per_min_recent or p.videos_per_min_overall
        if rate:
            p.eta_s = max(p.total - p.done, 0) / rate * 60
    return p


def _expected_shards(names: Sequence[str]) -> int:
    """How many shards the names announce: N for each ``shard-K-of-N`` family, 1 per other."""
    families: set[int] = set()
    others = 0
    for name in names:
        m = _SHARD_RE.match(name)
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


def _metric(value: str | None) -> float | None:
    """A log cell as a number; ``NA``, blanks and NaN become None."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def parse_training_log(text: str) -> list[dict[str, float | None]]:
    """Rows of a Keras CSV log, skipping a row still being written and repeated headers."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines:
        return []
    reader = csv.reader(io.StringIO("".join(lines)))
    header = next(reader, None) or []
    rows = []
    for cells in reader:
        if not cells or cells == header or len(cells) != len(header):
            continue
        rows.append({key: _metric(cell) for key, cell in zip(header, cells, strict=True)})
    return rows


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


@dataclass
class _Tail:
    """How far one manifest has been read, and the videos found so far."""

    file_id: tuple[int, int]
    offset: int = 0
    head: bytes = b""
    videos: dict[str, VideoDone] = field(default_factory=dict)


class ManifestTail:
    """Reads manifests incrementally: each poll parses only the lines appended since the last.

    Re-reading a whole manifest every few seconds grows with the run (about 1.4 s a poll at
    10,000 videos with crop lists); this keeps a poll's cost to the new lines. Lines are taken
    as bytes up to the last newline, so a line being written (even one cut inside a multibyte
    character) waits for the next poll. A replaced or truncated file (another inode, a smaller
    size, or different first bytes) is read again from the start.
    """

    def __init__(self) -> None:
        self._tails: dict[Path, _Tail] = {}

    def videos(self, path: Path) -> list[VideoDone]:
        """Every video recorded in ``path`` so far, the latest record winning per video."""
        try:
            st = path.stat()
        except OSError:
            self._tails.pop(path, None)
            return []
        file_id = (st.st_dev, st.st_ino)
        tail = self._tails.get(path)
        if tail is None or tail.file_id != file_id or st.st_size < tail.offset:
            tail = self._tails[path] = _Tail(file_id)
        if st.st_size > tail.offset:
            try:
                with open(path, "rb") as fh:
                    if fh.read(len(tail.head)) != tail.head:  # same inode, another file
                        tail = self._tails[path] = _Tail(file_id)
                    fh.seek(tail.offset)
                    chunk = fh.read(st.st_size - tail.offset)
            except OSError as exc:
                log.debug("%s: not readable right now (%s)", path, exc)
                chunk = b""
            complete = chunk.rfind(b"\n") + 1
            if not tail.head:
                tail.head = chunk[:min(complete, 256)]
            tail.offset += complete
            records = []
            for line in chunk[:complete].splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    log.warning("%s: a line is not valid JSON; skipped", path)
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
            for video in videos_from_records(records, st.st_mtime):
                tail.videos.pop(video.video_id, None)
                tail.videos[video.video_id] = video
        return list(tail.videos.values())


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


# --------------------------------------------------------------------------- rendering


def format_duration(seconds: float | None) -> str:
    """Compact h/m/s text for a duration; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _f(value: float | None) -> str:
    """A rate with the digits that matter: 1234, 25.5, 0.05."""
    if value is None:
        return "?"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _done_text(p: Progress) -> str:
    if p.total is None:
        return f"{p.done} videos"
    percent = 100.0 if p.total <= 0 else 100 * p.done / p.total
    return f"{p.done}/{p.total} videos ({percent:.1f}%)"


def _state(snapshot: Snapshot) -> str:
    if isinstance(snapshot, WaitingSnapshot):
        return "waiting"
    return "done" if snapshot.done else "running"


def _window_label(window_s: float) -> str:
    """'5 min' for whole minutes, else a compact duration."""
    minutes = window_s / 60
    return f"{minutes:g} min" if minutes == int(minutes) else format_duration(window_s)


def _progress_line(p: Progress, window_s: float, now: float) -> str:
    window = _window_label(window_s)
    ago = "" if p.last_video_at is None else f", last {format_duration(now - p.last_video_at)} ago"
    return (
        f"{_done_text(p)}, faces {p.faces_saved}, no face {p.no_face}, errors {p.error} | "
        f"{_f(p.videos_per_min_recent)} videos/min (last {window}), "
        f"{_f(p.videos_per_min_overall)} overall | "
        f"{_f(p.frames_per_s_recent)} frames/s (last {window}), "
        f"{_f(p.frames_per_s_overall)} overall | left {format_duration(p.eta_s)}{ago}"
    )


def _reason_lines(p: Progress) -> list[str]:
    lines = []
    for kind, label in (("no_face", "no face"), ("error", "errors")):
        reasons = list(p.reasons.get(kind, {}).items())
        if reasons:
            shown = "; ".join(f"{n} {msg}" for msg, n in reasons[:MAX_REASONS_SHOWN])
            more = len(reasons) - MAX_REASONS_SHOWN
            lines.append(f"  {label}: {shown}" + (f"; +{more} other reasons" if more > 0 else ""))
    return lines


def _metric_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def _metric_groups(columns: Sequence[str]) -> list[str]:
    """Base metric names in log order ('auc' for auc and val_auc), epoch left out."""
    bases: list[str] = []
    for col in columns:
        base = col[4:] if col.startswith("val_") else col
        if col != "epoch" and base not in bases:
            bases.append(base)
    return bases


def render_text(snapshot: Snapshot) -> str:
    """Plain lines for logs, pipes and ``--once``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot.now))
    if isinstance(snapshot, WaitingSnapshot):
        return f"[{stamp}] waiting for {snapshot.folder}... ({snapshot.reason})"
    head = f"[{stamp}] {snapshot.folder}: {_state(snapshot)}"
    if isinstance(snapshot, PreprocessSnapshot):
        lines = [f"{head} (preprocessing)"]
        if snapshot.shards_expected > 1:
            lines[0] += f", {snapshot.shards_seen}/{snapshot.shards_expected} shards reporting"
        lines.append("  all: " + _progress_line(snapshot.overall, snapshot.window_s, snapshot.now))
        for p in snapshot.shards:
            lines.append(f"  {p.name}: " + _progress_line(p, snapshot.window_s, snapshot.now))
        lines.extend(_reason_lines(snapshot.overall))
        return "\n".join(lines)
    lines = [f"{head} (training), epochs completed {snapshot.epochs_completed}, "
             f"log updated {format_duration(snapshot.updated_ago_s)} ago"]
    for base in _metric_groups(snapshot.columns):
        train = _metric_text(snapshot.latest.get(base))
        val = f"val_{base}"
        if val not in snapshot.latest:
            lines.append(f"  {base}: {train}")
        elif base not in snapshot.latest:
            lines.append(f"  {base}: val {_metric_text(snapshot.latest.get(val))}")
        else:
            lines.append(f"  {base}: train {train}, val {_metric_text(snapshot.latest.get(val))}")
    if snapshot.best_metric:
        lines.append(f"  best {snapshot.best_metric} "
                     f"{_metric_text(snapshot.best.get(snapshot.best_metric))} "
                     f"at epoch {snapshot.best_epoch}")
    return "\n".join(lines)


def render_rich(snapshot: Snapshot) -> Any:
    """A rich renderable for a terminal: a table with progress bars, refreshed in place."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot.now))
    colour = {"waiting": "yellow", "done": "green", "running": "cyan"}[_state(snapshot)]
    head = Text.assemble((f"{snapshot.folder} ", "bold"), (_state(snapshot), colour),
                         (f"  {stamp}", "dim"))
    if isinstance(snapshot, WaitingSnapshot):
        return Text.assemble(("waiting", colour), f" for {snapshot.folder}... ",
                             (f"({snapshot.reason})  {stamp}", "dim"))
    if isinstance(snapshot, PreprocessSnapshot):
        if snapshot.shards_expected > 1:
            head.append(f"  {snapshot.shards_seen}/{snapshot.shards_expected} shards reporting")
        window = _window_label(snapshot.window_s)
        table = Table(box=None, pad_edge=False)
        table.add_column("shard" if snapshot.shards else "")
        table.add_column("", no_wrap=True)
        for col in ("videos", "%", "faces", "no face", "errors", f"videos/min\n{window}", "left"):
            table.add_column(col, justify="right", no_wrap=True)
        for p in [snapshot.overall, *snapshot.shards]:
            m = _SHARD_RE.match(p.name)
            known = p.total is not None
            bar = ProgressBar(total=float(max(p.total, 1)), width=12,
                              completed=float(min(p.done, max(p.total, 1)))) if known else ""
            table.add_row(
                f"{m.group(1)}/{m.group(2)}" if m else p.name, bar,
                f"{p.done}/{p.total}" if known else str(p.done),
                _done_text(p).split("(")[-1].rstrip(")") if known else "",
                str(p.faces_saved), str(p.no_face), str(p.error),
                _f(p.videos_per_min_recent), format_duration(p.eta_s),
            )
        o = snapshot.overall
        ago = "" if o.last_video_at is None else \
            f"; last video {format_duration(snapshot.now - o.last_video_at)} ago"
        speed = Text(
            f"{_f(o.videos_per_min_recent)} videos/min, {_f(o.frames_per_s_recent)} frames/s "
            f"in the last {window}; {_f(o.videos_per_min_overall)} videos/min, "
            f"{_f(o.frames_per_s_overall)} frames/s overall{ago}", style="dim")
        return Group(head, table, speed, *[Text(line) for line in _reason_lines(o)])
    head.append(f"  epochs completed {snapshot.epochs_completed}, "
                f"log updated {format_duration(snapshot.updated_ago_s)} ago")
    table = Table(box=None, pad_edge=False)
    best_col = f"best epoch {snapshot.best_epoch}" if snapshot.best_epoch else "best"
    for col in ("metric", "train", "val", f"{best_col} (val)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for base in _metric_groups(snapshot.columns):
        val = f"val_{base}"
        table.add_row(
            base,
            _metric_text(snapshot.latest.get(base)),
            _metric_text(snapshot.latest.get(val)) if val in snapshot.latest else "",
            _metric_text(snapshot.best.get(val)) if val in snapshot.best else "",
        )
    parts: list[Any] = [head, table]
    if snapshot.best_metric:
        parts.append(Text(f"best {snapshot.best_metric} "
                          f"{_metric_text(snapshot.best.get(snapshot.best_metric))} "
                          f"at epoch {snapshot.best_epoch}", style="bold"))
    return Group(*parts)


# --------------------------------------------------------------------------- watching


def watch(
    folder: Path,
    *,
    interval: float = DEFAULT_INTERVAL_S,
    window_s: float = DEFAULT_WINDOW_MIN * 60,
    once: bool = False,
    as_json: bool = False,
    out: TextIO,
    live: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll ``folder`` until its run is done (or once); 0 = shown, 1 = nothing to show yet.

    ``live`` redraws a rich display in place (a terminal); otherwise each poll prints plain
    lines, or one JSON object per line with ``as_json``.
    """
    tail = ManifestTail()

    def poll() -> Snapshot:
        return take_snapshot(folder, clock(), window_s, tail)

    def emit(snap: Snapshot) -> None:
        if as_json:
            out.write(json.dumps(snapshot_dict(snap), sort_keys=True) + "\n")
        else:
            out.write(render_text(snap) + "\n")
        out.flush()

    if live and not as_json:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        snap = poll()
        if once:
            console.print(render_rich(snap))
            return 1 if isinstance(snap, WaitingSnapshot) else 0
        with Live(render_rich(snap), console=console, auto_refresh=False) as screen:
            while not snap.done:
                sleep(interval)
                snap = poll()
                screen.update(render_rich(snap), refresh=True)
        return 0
    while True:
        snap = poll()
        emit(snap)
        if once:
            return 1 if isinstance(snap, WaitingSnapshot) else 0
        if snap.done:
            return 0
        sleep(interval)

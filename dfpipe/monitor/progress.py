"""Progress of a preprocessing run from its manifest records: videos done, rates over a
recent window and overall, time left, and why videos failed. Pure functions of the records
and ``now``, so they are tested exactly."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_REASONS_SHOWN = 5


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

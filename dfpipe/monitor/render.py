"""The two views of a snapshot: plain text (one block per poll, for logs and pipes) and a
rich live table (for a terminal)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from dfpipe.monitor.progress import (
    MAX_REASONS_SHOWN,
    Progress,
)
from dfpipe.monitor.snapshot import (
    SHARD_NAME,
    PreprocessSnapshot,
    Snapshot,
    WaitingSnapshot,
)

log = logging.getLogger(__name__)



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
            m = SHARD_NAME.match(p.name)
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

"""The watch loop: poll a folder, print or redraw the snapshot, stop when the run is done."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from dfpipe.monitor.render import render_rich, render_text
from dfpipe.monitor.snapshot import (
    DEFAULT_WINDOW_MIN,
    Snapshot,
    WaitingSnapshot,
    snapshot_dict,
    take_snapshot,
)
from dfpipe.monitor.tail import ManifestTail

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


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

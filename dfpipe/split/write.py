"""Write a split atomically: the crop tree (hard links or copies), the tables and the report."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import DROPPED_TABLE, SPLIT_REPORT, SPLIT_REPORT_TEXT, SPLIT_TABLE

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("path", "split", "label", "label_id", "video_id", "group",
                            "group_rule", "frame", "face", "face_size", "confidence", "sharpness",
                            "landmarks")
DROPPED_COLUMNS: tuple[str, ...] = ("split", "video_id", "label", "group", "group_rule",
                                    "relpath", "reason", "detail")


def check_output(input_dir: Path, output: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless overwrite) or that holds the input."""
    src, dst = Path(input_dir).resolve(), Path(output).resolve()
    if dst == src or dst in src.parents:
        raise PipelineError(f"--output {output} would contain the input {input_dir}: "
                            "choose another output folder")
    if output.exists() and not overwrite and not (output.is_dir() and not any(output.iterdir())):
        raise PipelineError(f"output {output} already exists: pass --overwrite to replace it, "
                            "or choose another --output")


def write_output(input_dir: Path, output: Path, rows: Sequence[dict[str, Any]],
                 report: dict[str, Any], copy: bool = False,
                 dropped: Sequence[dict[str, Any]] = ()) -> str:
    """Build tree, table and report in a temp sibling, then move it into place; link mode."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    old = output.parent / f".{output.name}.old-{os.getpid()}"
    _remove(tmp)
    try:
        tmp.mkdir()
        mode = _place_files(Path(input_dir), tmp, rows, copy)
        report["link_mode"] = mode
        _write_table(tmp / SPLIT_TABLE, rows)
        _write_table(tmp / DROPPED_TABLE, dropped, DROPPED_COLUMNS)
        (tmp / SPLIT_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / SPLIT_REPORT_TEXT).write_text(report_text(report), encoding="utf-8")
        if output.exists():
            os.replace(output, old)
        try:
            os.replace(tmp, output)
        except OSError:
            if old.exists():
                os.replace(old, output)
            raise
    finally:
        _remove(tmp)
    _remove(old)
    return mode


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _place_files(src_root: Path, dst_root: Path, rows: Sequence[dict[str, Any]],
                 copy: bool) -> str:
    link = not copy
    made: set[Path] = set()
    for row in tqdm(rows, desc="writing", unit="crop", disable=len(rows) < 200):
        dst = dst_root / row["path"]
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        src = src_root / row["source"]
        if link:
            try:
                os.link(src, dst)
                continue
            except OSError as exc:
                log.info("cannot hard-link (%s); copying instead", exc)
                link = False
        shutil.copy2(src, dst)
    return "hardlink" if link else "copy"


def _write_table(path: Path, rows: Sequence[dict[str, Any]],
                 columns: Sequence[str] = COLUMNS) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def report_text(report: dict[str, Any]) -> str:
    """The report as a few readable lines: filter counts and a per-split table."""
    f = report["filter"]
    if report["protocol"]:
        how = f"groups placed by protocol {report['protocol']}"
    else:
        shares = " / ".join(f"{k} {v:.2f}" for k, v in report["ratios"].items())
        how = f"groups placed by ratios {shares}, seed {report['seed']}"
    lines = [f"split of {report['input']}: {how}", "",
             f"crops in manifest: {f['crops_in']}, kept: {f['crops_kept']}"]
    videos_from = (report.get("videos") or {}).get("videos_from")
    if videos_from:
        lines.append(f"videos: {videos_from}")
    lines += [f"  removed by {rule}: {n}" for rule, n in f["removed"].items()]
    if report.get("dropped_unlisted"):
        d = report["dropped_unlisted"]
        lines.append(f"  left out (not in protocol): {d['groups']} groups, {d['crops']} crops")
    lines += ["", f"{'split':<6}{'groups':>8}{'videos':>8}{'real v':>8}{'fake v':>8}"
                  f"{'crops':>8}{'real c':>8}{'fake c':>8}{'fake %':>8}"]
    for name, s in report["splits"].items():
        share = "-" if s["fake_share"] is None else f"{100 * s['fake_share']:.1f}"
        lines.append(f"{name:<6}{s['groups']:>8}{s['videos']:>8}{s['real_videos']:>8}"
                     f"{s['fake_videos']:>8}{s['crops']:>8}{s['real_crops']:>8}"
                     f"{s['fake_crops']:>8}{share:>8}")
    rules = report.get("group_rules") or {}
    if rules:
        lines += ["", "videos per group rule (how each video joined its group):"]
        lines += [f"  {name:<6} " + (", ".join(f"{r} {n}" for r, n in counts.items()) or "-")
                  for name, counts in rules.items()]
    if report.get("ungrouped_fakes"):
        lines.append(f"  fakes with no known source (allowed): {report['ungrouped_fakes']}")
    dropped = report.get("dropped_videos") or {}
    if any(dropped.values()):
        lines += ["", f"videos without a kept crop ({DROPPED_TABLE}; they count as uncovered "
                      "in evaluate):"]
        lines += [f"  {name:<6} " + (", ".join(f"{r} {n}" for r, n in counts.items()) or "-")
                  for name, counts in dropped.items()]
    leak = report["leak_check"]
    lines += ["", f"leak check: passed ({leak['groups_checked']} groups, "
                  f"{leak['videos_checked']} videos, each in one split only)"]
    if report.get("target_leak"):
        t = report["target_leak"]
        lines.append(f"grouped by target identity: {t['source_identities_crossing']} of "
                     f"{t['source_identities']} source identities cross splits "
                     f"({t['fakes_with_crossing_source']} fakes), the leak this accepts")
    if report.get("official"):
        lines.append(f"official protocol: {report['official']['note']}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"



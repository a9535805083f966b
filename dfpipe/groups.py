"""Find each video's source identity (group), so the split keeps related videos together.

Rules, first match wins: a labels CSV (path,label[,group]); a DFDC ``metadata.json``
beside the video (a fake's group is its ``original``); a FaceForensics++ fake named
``TARGET_SOURCE`` (group = target); otherwise the video is its own group (its stem).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import PipelineError
from .labels import CLASS_NAMES

log = logging.getLogger(__name__)

FFPP_FAKE = re.compile(r"^(\d+)_(\d+)$")
GROUP_COLUMNS = ("group", "source_video", "original")


@dataclass(frozen=True)
class LabelRow:
    label: str | None
    group: str | None


def read_labels_csv(path: Path, root: Path) -> dict[str, LabelRow]:
    """Rows of a labels CSV keyed by path relative to ``root`` (posix)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"labels file not found: {path}")
    rows: dict[str, LabelRow] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise PipelineError(f"{path}: a labels CSV needs a 'path' column (path,label[,group])")
        group_col = next((c for c in GROUP_COLUMNS if c in reader.fieldnames), None)
        for row in reader:
            rel = Path(row["path"].strip())
            if rel.is_absolute():
                try:
                    rel = rel.relative_to(root)
                except ValueError:
                    continue
            label = (row.get("label") or "").strip().lower() or None
            if label is not None and label not in CLASS_NAMES:
                raise PipelineError(f"{path}: label {label!r} for {rel} is not real or fake")
            group = (row.get(group_col) or "").strip() if group_col else ""
            rows[rel.as_posix()] = LabelRow(label, _stem(group) if group else None)
    return rows


@lru_cache(maxsize=1024)
def _dfdc_metadata(folder: Path) -> dict[str, dict]:
    meta = folder / "metadata.json"
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable %s (%s)", meta, exc)
        return {}


def _stem(name: str) -> str:
    return Path(name).stem if Path(name).suffix else name


def find_group(video: Path, label: str, labels: dict[str, LabelRow] | None = None,
               rel: str | None = None) -> tuple[str, str]:
    """Return ``(group, rule)`` for a video, ``rule`` naming which evidence decided."""
    if labels and rel in labels and labels[rel].group:
        return labels[rel].group, "labels_csv"
    meta = _dfdc_metadata(video.parent).get(video.name)
    if meta is not None:
        original = meta.get("original")
        if original:
            return _stem(original), "dfdc_metadata"
        return video.stem, "dfdc_metadata"
    match = FFPP_FAKE.match(video.stem)
    if label == "fake" and match:
        return match.group(1), "ffpp_name"
    return video.stem, "self"

"""A folder of already-cropped faces with a labels CSV, read as split.py's input.

Public face datasets often ship crops, not videos: ``path,label[,group]`` (paths relative to
the folder), sometimes with more columns (the shared dfdc_faces CSV has
``path,label,video,source_video,face_width,face_height``). This module turns such a folder
into the same crops and counts that :func:`dfpipe.split.run.load_crops` reads from a
preprocess.py manifest, so the data goes through the one split, quality filter and report.

What is not known stays unknown: a crop without a face size or detector confidence passes
those two rules (NaN never compares below a threshold) and the report says how many did;
the crop settings (margin, size, detector) are recorded as given to split.py, or as unknown,
so the trained model's metadata never claims settings nobody knew.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES, IMAGE_EXTENSIONS
from dfpipe.core.manifest import manifest_paths
from dfpipe.extract.identities import (
    GROUP_COLUMNS,
    SELF_RULE,
    cell_identities,
    connect,
    is_ungrouped_fake,
    stem_of,
)
from dfpipe.split.manifest_input import VideoRecord
from dfpipe.split.quality import FaceCrop

log = logging.getLogger(__name__)

DEFAULT_LABELS = "labels.csv"
SOURCE = "crops_folder"
VIDEO_COLUMNS: tuple[str, ...] = ("video", "video_id")
SIZE_COLUMNS: tuple[str, ...] = ("face_width", "face_height")
UNKNOWN_NOTE = "crops folder, settings unknown"

Loader = Callable[[Path], tuple[list[FaceCrop], dict[str, Any]]]


@dataclass(frozen=True)
class CropSettings:
    """What the user states about how the crops were cut (None: not known). The detector
    that found the faces is never known from a crops folder."""

    margin: float | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin > 0):
            raise PipelineError(f"--margin must be a positive number, got {self.margin}")
        if self.size is not None and self.size < 1:
            raise PipelineError(f"--size must be at least 1 pixel, got {self.size}")

    def record(self, labels: Path) -> dict[str, Any]:
        """The ``preprocess`` entry of the split report, read into the model's metadata."""
        given = [k for k in ("margin", "size") if getattr(self, k) is not None]
        unknown = [k for k in ("margin", "size", "detector") if k not in given]
        note = UNKNOWN_NOTE if not given else (
            f"crops folder; {' and '.join(given)} given to split.py, {', '.join(unknown)} unknown")
        return {"source": SOURCE, "labels": str(labels), "margin": self.margin,
                "size": self.size, "detector": None, "known": given, "unknown": unknown,
                "note": note}


def default_labels(root: Path) -> Path | None:
    """``root/labels.csv`` when ``root`` is a crops folder rather than a preprocess output
    (no manifest), so ``split.py --input CROPS`` works without ``--labels``."""
    root = Path(root)
    if root.is_dir() and not manifest_paths(root) and (root / DEFAULT_LABELS).is_file():
        return root / DEFAULT_LABELS
    return None


def make_loader(labels: Path, group_column: str | None = None,
                settings: CropSettings | None = None, crop_is_video: bool = False) -> Loader:
    """A loader with split's ``load_crops`` signature (root -> crops, counts)."""
    return partial(load_crop_folder, labels=Path(labels), group_column=group_column,
                   settings=settings or CropSettings(), crop_is_video=crop_is_video)


def loader_for(root: Path, labels: Path | None, group_column: str | None = None,
               margin: float | None = None, size: int | None = None,
               crop_is_video: bool = False) -> Loader | None:
    """split.py's choice: the crops-folder loader when ``root`` holds no manifest and a labels
    CSV is given (or lies at ``root/labels.csv``); None (read the manifest, where ``labels``
    only adds identities) otherwise. ``--group-column`` given for a preprocess output is
    refused rather than silently ignored."""
    root = Path(root)
    if root.is_dir() and manifest_paths(root):
        if group_column is not None:
            raise PipelineError("--group-column describes a crops folder; a preprocess.py "
                                "output records its own groups (add ids with --labels)")
        return None
    if labels is None:
        labels = default_labels(root)
        if labels is not None:
            log.info("no manifest in %s: reading it as a crops folder labelled by %s",
                     root, labels)
    if labels is None:
        return None
    return make_loader(labels, group_column, CropSettings(margin=margin, size=size),
                       crop_is_video)




def _columns(fields: list[str], labels: Path, group_column: str | None) -> tuple[str | None,
                                                                               str | None]:
    missing = [c for c in ("path", "label") if c not in fields]
    if missing:
        raise PipelineError(f"{labels}: a labels CSV needs the columns path,label[,group] "
                            f"(missing {','.join(missing)}; found {','.join(fields) or 'none'})")
    if group_column is not None:
        if group_column not in fields:
            raise PipelineError(f"{labels}: --group-column {group_column} is not a column "
                                f"(found {','.join(fields)})")
        group = group_column
    else:
        group = next((c for c in GROUP_COLUMNS if c in fields), None)
    video = next((c for c in VIDEO_COLUMNS if c in fields), None)
    return group, video


def _number(value: str | None, what: str, where: str) -> float:
    text = (value or "").strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise PipelineError(f"{where}: {what} {text!r} is not a number") from None


def read_rows(labels: Path, group_column: str | None = None) -> list[dict[str, Any]]:
    """The CSV's rows, checked: known labels, no path twice, optional numeric columns."""
    labels = Path(labels)
    if not labels.is_file():
        raise PipelineError(f"labels CSV not found: {labels} (a crops folder needs a CSV with "
                            "columns path,label[,group]; pass it with --labels)")
    rows = []
    seen: dict[str, int] = {}
    try:
        with open(labels, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            group_col, video_col = _columns([f.strip() for f in reader.fieldnames or []],
                                            labels, group_column)
            reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
            for line, row in enumerate(reader, start=2):
                where = f"{labels} line {line}"
                path = (row.get("path") or "").strip()
                if not path:
                    raise PipelineError(f"{where}: empty path")
                label = (row.get("label") or "").strip().lower()
                if label not in CLASS_NAMES:
                    raise PipelineError(f"{where}: unknown label {row.get('label')!r} for {path} "
                                        f"(use {' or '.join(CLASS_NAMES)})")
                if path in seen:
                    raise PipelineError(f"{where}: {path} is listed twice (first on line "
                                        f"{seen[path]})")
                seen[path] = line
                sizes = [_number(row.get(c), c, where) for c in SIZE_COLUMNS]
                known = [s for s in sizes if not math.isnan(s)]
                rows.append({
                    "path": path, "label": label,
                    "group": tuple(cell_identities(row.get(group_col) or "" if group_col
                                                   else "")),
                    "video": stem_of((row.get(video_col) or "").strip()) if video_col else "",
                    "frame": _number(row.get("frame"), "frame", where),
                    "face_size": max(known) if known else math.nan,
                    "confidence": _number(row.get("confidence"), "confidence", where)})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"cannot read labels CSV {labels}: {exc}") from None
    if not rows:
        raise PipelineError(f"{labels} lists no crops")
    return rows


VIDEO_RULES = {
    "column": "the labels CSV's video column",
    "folder": "each crop's parent folder (the labels CSV has no video column)",
    "crop": "each crop on its own (--crop-is-video: the labels CSV has no video column)",
}


def _video_rule(rows: list[dict[str, Any]], labels: Path, crop_is_video: bool) -> str:
    """How crops are joined into videos: the CSV's column, else each crop's parent folder; a
    flat folder (crops straight under the root or a class folder) is refused, since crops of
    one video would land on both sides of the split, unless each crop is a video."""
    if all(r["video"] for r in rows):
        return "column"
    if crop_is_video:
        return "crop"
    flat = [r["path"] for r in rows if not r["video"] and _parent(r["path"]) in FLAT_PARENTS]
    if flat:
        raise PipelineError(f"{labels}: {len(flat)} crops have no video (no video column) and "
                            f"lie in no folder of their own (first: {flat[0]}): add a video "
                            "column, put each video's crops in a folder, or pass "
                            "--crop-is-video if every crop comes from a different video")
    return "folder"


FLAT_PARENTS = {"", ".", *CLASS_NAMES}


def _parent(path: str) -> str:
    return Path(path).parent.as_posix()


def _video_id(row: dict[str, Any], rule: str) -> str:
    if row["video"]:
        return row["video"]
    if rule == "folder":
        return _parent(row["path"])
    return Path(row["path"]).with_suffix("").as_posix().replace("/", "__")


def load_crop_folder(root: Path, labels: Path, group_column: str | None = None,
                     settings: CropSettings | None = None,
                     crop_is_video: bool = False) -> tuple[list[FaceCrop], dict[str, Any]]:
    """Every crop the CSV lists, as :class:`FaceCrop` (file relative to ``root``), and the
    counts :func:`dfpipe.split.run.load_crops` returns for a manifest."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"input folder not found: {root}")
    rows = read_rows(labels, group_column)
    missing = []
    for row in rows:
        file = root / row["path"]
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            raise PipelineError(f"{labels}: {row['path']} is not an image "
                                f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        if not file.is_file():
            missing.append(row["path"])
    if missing:
        raise PipelineError(f"{labels}: {len(missing)} of {len(rows)} listed paths do not exist "
                            f"under {root} (first: {missing[0]}); paths are relative to the "
                            "crops folder (--input)")
    video_rule = _video_rule(rows, labels, crop_is_video)
    by_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_video[_video_id(row, video_rule)].append(row)
    identities: dict[str, list[str]] = {}
    for video, members in by_video.items():
        kinds = {r["label"] for r in members}
        if len(kinds) > 1:
            raise PipelineError(f"{labels}: video {video} has both real and fake crops "
                                "(one label per video)")
        named = {r["group"] for r in members if r["group"]}
        if len(named) > 1:
            raise PipelineError(f"{labels}: video {video} is in several groups "
                                f"({', '.join('|'.join(g) for g in sorted(named))}); "
                                "one group per video")
        identities[video] = sorted(named.pop()) if named else [video]
    groups = connect(identities)
    crops: list[FaceCrop] = []
    records: list[VideoRecord] = []
    videos_by_label: Counter[str] = Counter()
    for video in sorted(by_video):
        members = by_video[video]
        label = members[0]["label"]
        rule = SELF_RULE if identities[video] == [video] else "labels_csv"
        videos_by_label[label] += 1
        records.append(VideoRecord(video, label, groups[video], rule, members[0]["path"], "ok",
                                   "", tuple(identities[video])))
        for i, r in enumerate(members):
            frame = i if math.isnan(r["frame"]) else int(r["frame"])
            crops.append(FaceCrop(file=r["path"], label=label, video_id=video,
                                  group=groups[video], frame=frame, face=0,
                                  face_size=r["face_size"], confidence=r["confidence"],
                                  group_rule=rule))
    unknown = {"face_size": sum(math.isnan(c.face_size) for c in crops),
               "confidence": sum(math.isnan(c.confidence) for c in crops)}
    for rule, n in unknown.items():
        if n:
            log.info("%d of %d crops have no %s in %s: that rule cannot remove them", n,
                     len(crops), rule, labels)
    record = (settings or CropSettings()).record(labels)
    log.info("crop settings: %s", record["note"])
    stats = {"source": SOURCE, "labels": str(labels), "videos_from": VIDEO_RULES[video_rule],
             "videos_in_manifest": len(by_video), "videos_by_status": {"ok": len(by_video)},
             "ok_videos_by_label": {name: videos_by_label[name] for name in CLASS_NAMES},
             "unknown_quality_fields": unknown, "preprocess": record,
             "ungrouped_fakes": sum(is_ungrouped_fake(v.label, v.group_rule) for v in records),
             "records": records}
    return crops, stats

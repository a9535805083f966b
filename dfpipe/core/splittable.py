"""Read the labelled crops of one split, as split.py lays them out.

Train and evaluate both read crops through here, so videos and groups always come from
the split table (never from parsing file names). A folder without ``split.csv`` but laid
out as ``<split>/{real,fake}/<video>/<image>`` is read too: the video is the image's folder
relative to ``<split>/<label>`` (so ``Deepfakes/000_003`` and ``FaceSwap/000_003`` differ).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES, IMAGE_EXTENSIONS, label_id

SPLIT_TABLE = "split.csv"
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


@dataclass(frozen=True)
class Crop:
    """One face crop with its class (0 real, 1 fake), video and source group."""

    path: Path
    label: int
    video_id: str
    group: str
    split: str
    frame: int = -1
    landmarks: tuple[tuple[float, float], ...] | None = None  # five keypoints, crop pixels


def load_split(root: Path, split: str) -> list[Crop]:
    """All crops of ``split`` under ``root``, ordered by path; a clear error if none."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"split folder not found: {root} (run split.py first)")
    table = root / SPLIT_TABLE
    crops = _from_table(root, table, split) if table.is_file() else _from_folders(root, split)
    if not crops:
        raise PipelineError(f"no crops in split '{split}' under {root}")
    return crops


def _from_table(root: Path, table: Path, split: str) -> list[Crop]:
    crops = []
    with open(table, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != split:
                continue
            frame = row.get("frame", "")
            crops.append(Crop(
                path=root / row["path"],
                label=label_id(row["label"]),
                video_id=row["video_id"],
                group=row.get("group") or row["video_id"],
                split=split,
                frame=int(frame) if frame not in ("", None) else -1,
                landmarks=_landmarks(row.get("landmarks"), table),
            ))
    return sorted(crops, key=lambda c: str(c.path))


def _landmarks(text: str | None, table: Path) -> tuple[tuple[float, float], ...] | None:
    """The split table's ``landmarks`` cell (JSON [[x, y] x 5]) as a tuple, None if empty."""
    if not text:
        return None
    try:
        points = tuple((float(x), float(y)) for x, y in json.loads(text))
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"{table}: bad landmarks cell {text[:40]!r} ({exc}); re-run "
                            "split.py") from None
    if len(points) != 5:
        raise PipelineError(f"{table}: a landmarks cell holds {len(points)} points, not 5; "
                            "re-run split.py")
    return points


def _from_folders(root: Path, split: str) -> list[Crop]:
    base = root / split
    if not base.is_dir():
        raise PipelineError(f"no '{split}' folder under {root} (expected {base}/real, {base}/fake)")
    crops = []
    for name in CLASS_NAMES:
        for path in sorted((base / name).rglob("*")):
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            # the path below <split>/<label>: fake/Deepfakes/000_003 and fake/FaceSwap/000_003
            # are two videos, not one
            folder = path.parent.relative_to(base / name)
            video = folder.as_posix() if folder.parts else path.stem
            stem = path.stem.split("_")[0]
            crops.append(Crop(path=path, label=label_id(name), video_id=video, group=video,
                              split=split, frame=int(stem) if stem.isdigit() else -1))
    return sorted(crops, key=lambda c: str(c.path))

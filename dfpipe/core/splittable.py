"""Read the labelled crops of one split, as split.py lays them out.

Train and evaluate both read crops through here, so videos and groups always come from
the split table (never from parsing file names). A folder without ``split.csv`` but laid
out as ``<split>/{real,fake}/<video>/<image>`` is read too: the video is the image's folder
relative to ``<split>/<label>`` (so ``Deepfakes/000_003`` and ``FaceSwap/000_003`` differ).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import SPLIT_REPORT, SPLIT_TABLE
from dfpipe.core.labels import CLASS_NAMES, IMAGE_EXTENSIONS, label_id

log = logging.getLogger(__name__)

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


# -- the split report: what split.py recorded about the crops ------------------------------

QUALITY_RULE_KEYS: tuple[str, ...] = ("min_face", "min_sharpness", "min_confidence",
                                      "max_per_video")


def read_split_report(root: Path) -> dict[str, Any] | None:
    """split.py's report of a split folder; None (with a warning) when there is none, and a
    PipelineError when it is not JSON."""
    path = Path(root) / SPLIT_REPORT
    if not path.is_file():
        log.warning("%s not found: what split.py recorded (crop settings, quality rules) "
                    "is unknown", path)
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid JSON ({exc}): re-run split.py") from None
    return report if isinstance(report, dict) else None


def crop_settings(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Crop margin, size, detector and frame sampling of the split's crops (the report's
    ``preprocess`` key); None, with a warning, when the report does not say."""
    pre = (report or {}).get("preprocess")
    if not isinstance(pre, dict):
        log.warning("the split report has no 'preprocess' settings: the model's crop settings "
                    "are unknown (recorded as null)")
        return None
    sampling = {k: pre[k] for k in ("every", "frames", "faces") if k in pre}
    return {"margin": pre.get("margin"), "size": pre.get("size"),
            "detector": pre.get("detector"), "sampling": sampling, "settings": pre}


def quality_rules(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quality rules split.py applied (the report's ``filter`` key), for the model's
    metadata so the app applies the same ones; None when the report does not say."""
    used = (report or {}).get("filter")
    if not isinstance(used, dict) or not all(k in used for k in QUALITY_RULE_KEYS):
        return None
    return {**{k: used[k] for k in QUALITY_RULE_KEYS},
            "source": f"{SPLIT_REPORT} of the training split"}

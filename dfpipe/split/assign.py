"""Group -> split assignment: by ratios (seeded, stratified per class) or by a protocol."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import label_id
from dfpipe.core.splittable import SPLIT_NAMES
from dfpipe.split.quality import FaceCrop

DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEFAULT_SEED = 42
TRIALS = 32
UNLISTED_CHOICES: tuple[str, str] = ("error", "drop")


def normalize_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three positive shares for train/val/test, scaled to sum to 1 (so 70 15 15 works too)."""
    values = [float(r) for r in ratios]
    if len(values) != 3 or not all(math.isfinite(r) and r > 0 for r in values):
        raise PipelineError(f"--ratios needs three positive numbers for train val test, got "
                            f"{' '.join(str(r) for r in ratios)} (e.g. --ratios 0.7 0.15 0.15)")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def group_sizes(crops: Iterable[FaceCrop]) -> dict[str, np.ndarray]:
    """Per group: [real crops, fake crops, real videos, fake videos]."""
    sizes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(4))
    seen_videos: set[str] = set()
    for crop in crops:
        k = label_id(crop.label)
        sizes[crop.group][k] += 1
        if crop.video_id not in seen_videos:
            seen_videos.add(crop.video_id)
            sizes[crop.group][2 + k] += 1
    return dict(sizes)


def assign_groups(sizes: dict[str, np.ndarray], ratios: Sequence[float], seed: int,
                  trials: int = TRIALS) -> dict[str, str]:
    """Map every group to a split, meeting the ratios per class in crops and in videos.

    Each of ``trials`` seeded random group orders is placed greedily: a group goes to the
    split where it most reduces the distance to the targets (a chi-square over real/fake
    crops and real/fake videos per split); a split left empty then takes the group whose
    move costs least. The kept order is the one with the fewest splits missing a class,
    then the smallest distance. Deterministic for a seed; another seed gives another split.
    """
    names = sorted(sizes)
    if len(names) < len(SPLIT_NAMES):
        raise PipelineError(f"only {len(names)} group(s) (source identities) after filtering: "
                            f"at least {len(SPLIT_NAMES)} are needed for train/val/test "
                            "(add videos, or relax the quality filter)")
    a = np.array([sizes[n] for n in names], dtype=float)
    total = a.sum(axis=0)
    norm = np.array([total[:2].sum()] * 2 + [total[2:].sum()] * 2)
    target = np.asarray(ratios, dtype=float)[:, None] * total[None, :]
    weight = np.divide(1.0, target * norm, out=np.zeros_like(target), where=target > 0)
    rng = np.random.default_rng(seed)
    orders = np.stack([rng.permutation(len(names)) for _ in range(trials)])
    fill = np.zeros((trials, len(SPLIT_NAMES), 4))
    choice = np.empty((trials, len(names)), dtype=int)
    rows = np.arange(trials)
    for step in range(len(names)):
        g = a[orders[:, step]][:, None, :]
        delta = (g * (2.0 * (fill - target) + g) * weight).sum(axis=2)
        best = delta.argmin(axis=1)
        fill[rows, best] += g[:, 0]
        choice[rows, orders[:, step]] = best
    for t in range(trials):
        _fill_empty_splits(fill[t], choice[t], a, target, weight)
    cost = (((fill - target) ** 2) * weight).sum(axis=(1, 2))
    missing = ((fill[:, :, :2] == 0) & (total[None, None, :2] > 0)).sum(axis=(1, 2))
    pick = min(range(trials), key=lambda t: (missing[t], cost[t], t))
    return {name: SPLIT_NAMES[choice[pick, i]] for i, name in enumerate(names)}


def _fill_empty_splits(fill: np.ndarray, choice: np.ndarray, a: np.ndarray, target: np.ndarray,
                       weight: np.ndarray) -> None:
    """Give an empty split the group whose move costs least (few, uneven groups only)."""
    while True:
        counts = np.bincount(choice, minlength=len(SPLIT_NAMES))
        empty = np.flatnonzero(counts == 0)
        if not len(empty):
            return
        s = int(empty[0])
        movable = np.flatnonzero(counts[choice] > 1)
        u = choice[movable]
        g = a[movable]
        before = ((fill[u] - target[u]) ** 2 * weight[u]).sum(1) + (
            (fill[s] - target[s]) ** 2 * weight[s]).sum()
        after = ((fill[u] - g - target[u]) ** 2 * weight[u]).sum(1) + (
            (fill[s] + g - target[s]) ** 2 * weight[s]).sum(1)
        i = int(movable[np.argmin(after - before)])
        fill[choice[i]] -= a[i]
        fill[s] += a[i]
        choice[i] = s


# --- official protocols ------------------------------------------------------------------

def read_protocol(path: Path) -> dict[str, str]:
    """Group -> split from a folder of FaceForensics++ train/val/test.json or a group,split CSV."""
    path = Path(path)
    if path.is_dir():
        return _read_json_protocol(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _read_csv_protocol(path)
    if path.is_file() and path.suffix.lower() == ".json":
        raise PipelineError(f"--protocol {path}: pass the folder that holds train.json, val.json "
                            "and test.json, not one of the files")
    raise PipelineError(f"--protocol {path}: not found, or neither a folder of "
                        "train/val/test.json nor a .csv with columns group,split")


def _read_json_protocol(folder: Path) -> dict[str, str]:
    missing = [f"{s}.json" for s in SPLIT_NAMES if not (folder / f"{s}.json").is_file()]
    if missing:
        raise PipelineError(f"--protocol {folder} lacks {', '.join(missing)} (a FaceForensics++ "
                            "protocol folder has train.json, val.json and test.json)")
    mapping: dict[str, str] = {}
    for split in SPLIT_NAMES:
        file = folder / f"{split}.json"
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PipelineError(f"cannot read protocol file {file}: {exc}") from None
        for group in _flatten_ids(data, file):
            _claim(mapping, group, split, file)
    return mapping


def _flatten_ids(data: Any, file: Path) -> list[str]:
    if not isinstance(data, list):
        raise PipelineError(f"protocol file {file} must hold a JSON list of ids or of id pairs")
    ids = []
    for item in data:
        for value in item if isinstance(item, list) else [item]:
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise PipelineError(f"protocol file {file}: {value!r} is not a video id")
            ids.append(str(value))
    return ids


def _read_csv_protocol(file: Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"group", "split"} <= set(reader.fieldnames or []):
                raise PipelineError(f"protocol file {file} needs the columns group,split "
                                    f"(found {','.join(reader.fieldnames or []) or 'none'})")
            for row in reader:
                split = (row["split"] or "").strip().lower()
                if split not in SPLIT_NAMES:
                    raise PipelineError(f"protocol file {file}: split {row['split']!r} for group "
                                        f"{row['group']!r} is not one of {', '.join(SPLIT_NAMES)}")
                _claim(mapping, (row["group"] or "").strip(), split, file)
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read protocol file {file}: {exc}") from None
    return mapping


def _claim(mapping: dict[str, str], group: str, split: str, file: Path) -> None:
    if mapping.setdefault(group, split) != split:
        raise PipelineError(f"protocol {file} puts group {group} in both {mapping[group]} and "
                            f"{split}: fix the protocol")


def protocol_splits(groups: Iterable[str], protocol: dict[str, str], source: Path,
                    members: dict[str, Iterable[str]] | None = None) -> dict[str, str]:
    """Split of each group the protocol lists: through any of its identities (``members``);
    refuses a group whose identities the protocol puts in different splits."""
    out = {}
    for group in sorted(set(groups)):
        ids = sorted(set((members or {}).get(group, ())) | {group})
        where = {i: protocol[i] for i in ids if i in protocol}
        if len(set(where.values())) > 1:
            shown = ", ".join(f"{i} in {s}" for i, s in where.items())
            raise PipelineError(f"protocol {source} splits the identities of one group ({shown})"
                                ": the same person would be in two splits; fix the protocol or "
                                "use --ratios")
        if where:
            out[group] = next(iter(where.values()))
    return out


def apply_protocol(groups: Iterable[str], protocol: dict[str, str], source: Path,
                   unlisted: str, members: dict[str, Iterable[str]] | None = None
                   ) -> dict[str, str]:
    """Split of each group per the protocol; unlisted groups are refused or left out."""
    groups = sorted(set(groups))
    listed = protocol_splits(groups, protocol, source, members)
    absent = [g for g in groups if g not in listed]
    if absent and unlisted == "error":
        shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise PipelineError(f"protocol {source} does not list {len(absent)} of the {len(groups)} "
                            f"groups ({shown}): add them to it, or pass --unlisted drop to "
                            "leave them out")
    assignment = listed
    if not assignment:
        raise PipelineError(f"protocol {source} lists none of the {len(groups)} groups in the "
                            "input: do its ids match the manifest's group names?")
    empty = [s for s in SPLIT_NAMES if s not in set(assignment.values())]
    if empty:
        raise PipelineError(f"protocol {source} leaves {', '.join(empty)} without any group of "
                            "this input: use a protocol that covers every split, or --ratios")
    return assignment


def place_orphans(groups: Iterable[str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Splits for groups with no kept crop (their videos only count as uncovered): drawn
    at the ratios, seeded, in sorted order, so the same input gives the same answer."""
    rng = np.random.default_rng([seed, 1])
    p = np.asarray(ratios, dtype=float)
    return {g: SPLIT_NAMES[int(rng.choice(len(SPLIT_NAMES), p=p / p.sum()))]
            for g in sorted(set(groups))}

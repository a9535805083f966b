"""Leak-free train/val/test split of face crops: whole source groups go to one split.

Frames of one video, and a real video together with every fake made from it, share a
``group`` in the manifest. Splitting crops or videos at random lets the model meet the same
face in train and test, which inflates accuracy; here the unit is the group, the result is
checked for leaks before anything is written, and the output appears atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .croptable import SPLIT_NAMES, SPLIT_TABLE
from .errors import PipelineError
from .labels import CLASS_NAMES, label_id
from .manifest import manifest_paths, read_manifests
from .quality import FaceCrop, QualityRules, filter_crops

log = logging.getLogger(__name__)

DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEFAULT_SEED = 42
TRIALS = 32
UNLISTED_CHOICES: tuple[str, str] = ("error", "drop")
REPORT_JSON = "split_report.json"
REPORT_TXT = "split_report.txt"
COLUMNS: tuple[str, ...] = ("path", "split", "label", "label_id", "video_id", "group", "frame",
                            "face", "face_size", "confidence", "sharpness", "landmarks")


# --- reading the preprocess output -------------------------------------------------------

def load_crops(root: Path) -> tuple[list[FaceCrop], dict[str, Any]]:
    """Every crop the manifest lists for finished videos, and counts of videos by status."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"input folder not found: {root} (run preprocess.py --output {root})")
    if not any(root.iterdir()):
        raise PipelineError(f"input folder is empty: {root} (run preprocess.py --output {root})")
    if not manifest_paths(root):
        raise PipelineError(f"{root} has no manifest.jsonl, so it is not a preprocess.py output "
                            f"(run preprocess.py --output {root})")
    records = read_manifests(root)
    if not records:
        raise PipelineError(f"the manifest in {root} lists no finished video yet "
                            "(wait for preprocess.py to finish a video)")
    crops: list[FaceCrop] = []
    status = Counter()
    videos_by_label = Counter()
    for rec in sorted(records, key=lambda r: r["video_id"]):
        status[rec.get("status", "ok")] += 1
        if rec.get("status", "ok") != "ok":
            continue
        try:
            label = CLASS_NAMES[label_id(rec["label"])]
            crops.extend(_crop(rec, c, label) for c in rec.get("crops", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"manifest record of {rec.get('video_id')} in {root} is malformed "
                                f"({type(exc).__name__}: {exc}); re-run preprocess.py") from None
        videos_by_label[label] += 1
    stats = {"videos_in_manifest": len(records), "videos_by_status": dict(sorted(status.items())),
             "ok_videos_by_label": {name: videos_by_label[name] for name in CLASS_NAMES},
             "preprocess": preprocess_settings(records)}
    if not crops:
        raise PipelineError(f"the manifest in {root} lists no face crops "
                            "(every video ended in no_face or error; see its messages)")
    return crops, stats


def preprocess_settings(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The detector and crop/sampling settings the crops were made with, for the model's
    metadata (so the app crops new videos the same way); warns if the records disagree."""
    seen = {json.dumps({"detector": r.get("detector"), **(r.get("settings") or {})},
                       sort_keys=True) for r in records if r.get("settings")}
    if not seen:
        return None
    if len(seen) > 1:
        log.warning("the manifest records were made with %d different settings; the model's "
                    "metadata will state the first: %s", len(seen), sorted(seen)[0])
    return json.loads(sorted(seen)[0])


def _crop(rec: dict[str, Any], crop: dict[str, Any], label: str) -> FaceCrop:
    return FaceCrop(file=str(crop["file"]), label=label, video_id=str(rec["video_id"]),
                    group=str(rec.get("group") or rec["video_id"]), frame=int(crop["frame"]),
                    face=int(crop["face"]), face_size=float(crop["face_size"]),
                    confidence=float(crop["confidence"]),
                    landmarks=json.dumps(crop["landmarks"]) if crop.get("landmarks") else "")


def require_both_classes(crops: Sequence[FaceCrop], root: Path, stats: dict[str, Any],
                         removed: dict[str, int], stage: str) -> None:
    """Refuse a split that would train on one class only, saying why the class vanished."""
    present = {c.label for c in crops}
    for name in CLASS_NAMES:
        if name in present:
            continue
        if not stats["ok_videos_by_label"].get(name):
            raise PipelineError(f"no {name} videos with faces in the manifest of {root}: both "
                                f"real and fake are needed (add {name} videos, run preprocess.py)")
        lost = ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "none"
        raise PipelineError(f"no {name} crops left after {stage} (removed: {lost}); lower "
                            "--min-face/--min-sharpness/--min-confidence or check --protocol")


# --- assignment --------------------------------------------------------------------------

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


def apply_protocol(groups: Iterable[str], protocol: dict[str, str], source: Path,
                   unlisted: str) -> dict[str, str]:
    """Split of each group per the protocol; unlisted groups are refused or left out."""
    groups = sorted(set(groups))
    absent = [g for g in groups if g not in protocol]
    if absent and unlisted == "error":
        shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise PipelineError(f"protocol {source} does not list {len(absent)} of the {len(groups)} "
                            f"groups ({shown}): add them to it, or pass --unlisted drop to "
                            "leave them out")
    assignment = {g: protocol[g] for g in groups if g in protocol}
    if not assignment:
        raise PipelineError(f"protocol {source} lists none of the {len(groups)} groups in the "
                            "input: do its ids match the manifest's group names?")
    empty = [s for s in SPLIT_NAMES if s not in set(assignment.values())]
    if empty:
        raise PipelineError(f"protocol {source} leaves {', '.join(empty)} without any group of "
                            "this input: use a protocol that covers every split, or --ratios")
    return assignment


# --- checking and summarising ------------------------------------------------------------

def make_rows(crops: Iterable[FaceCrop], assignment: dict[str, str]) -> list[dict[str, Any]]:
    """The split table: one row per kept crop, sorted by its path in the split tree."""
    rows = []
    for c in crops:
        split = assignment[c.group]
        rows.append({
            "path": f"{split}/{c.label}/{c.video_id}/{Path(c.file).name}", "split": split,
            "label": c.label, "label_id": label_id(c.label), "video_id": c.video_id,
            "group": c.group, "frame": c.frame, "face": c.face, "face_size": c.face_size,
            "confidence": c.confidence, "sharpness": round(c.sharpness, 3),
            "landmarks": c.landmarks, "source": c.file})
    rows.sort(key=lambda r: r["path"])
    paths = [r["path"] for r in rows]
    if len(set(paths)) != len(paths):
        dup = next(p for p, n in Counter(paths).items() if n > 1)
        raise PipelineError(f"two crops would be written to {dup}: the manifest lists a crop "
                            "twice; re-run preprocess.py on that video")
    return rows


def check_no_leak(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Refuse if any group or video sits in two splits; return how many were checked."""
    seen: dict[str, dict[str, str]] = {"group": {}, "video_id": {}}
    for row in rows:
        for key, where in seen.items():
            first = where.setdefault(row[key], row["split"])
            if first != row["split"]:
                raise PipelineError(f"leak: {key} {row[key]} is in both {first} and "
                                    f"{row['split']}; nothing was written")
    return {"groups_checked": len(seen["group"]), "videos_checked": len(seen["video_id"])}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per split and overall: groups, videos, crops, and real/fake counts of both."""
    parts = {s: [r for r in rows if r["split"] == s] for s in SPLIT_NAMES}
    parts["all"] = list(rows)
    n_crops = max(len(rows), 1)
    n_videos = max(len({r["video_id"] for r in rows}), 1)
    out = {}
    for name, part in parts.items():
        videos = {r["video_id"]: r["label"] for r in part}
        fake = sum(r["label"] == "fake" for r in part)
        out[name] = {
            "groups": len({r["group"] for r in part}), "videos": len(videos), "crops": len(part),
            "real_videos": sum(v == "real" for v in videos.values()),
            "fake_videos": sum(v == "fake" for v in videos.values()),
            "real_crops": len(part) - fake, "fake_crops": fake,
            "fake_share": round(fake / len(part), 4) if part else None,
            "share_of_crops": round(len(part) / n_crops, 4),
            "share_of_videos": round(len(videos) / n_videos, 4)}
    return out


def class_warnings(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Splits that ended up without one class (possible with very few groups)."""
    return [f"{s} has no {c} crops" for s in SPLIT_NAMES for c in CLASS_NAMES
            if summary[s][f"{c}_crops"] == 0]


# --- writing -----------------------------------------------------------------------------

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
                 report: dict[str, Any], copy: bool = False) -> str:
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
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / REPORT_TXT).write_text(report_text(report), encoding="utf-8")
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


def _write_table(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
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
    leak = report["leak_check"]
    lines += ["", f"leak check: passed ({leak['groups_checked']} groups, "
                  f"{leak['videos_checked']} videos, each in one split only)"]
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


# --- the stage ---------------------------------------------------------------------------

def run_split(input_dir: Path, output: Path, *, rules: QualityRules | None = None,
              ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED,
              protocol: Path | None = None, unlisted: str = "error", copy: bool = False,
              overwrite: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Filter, split by group, check for leaks, write ``output``; return the report."""
    input_dir, output = Path(input_dir), Path(output)
    rules = rules or QualityRules()
    if unlisted not in UNLISTED_CHOICES:
        raise PipelineError(f"--unlisted must be one of {', '.join(UNLISTED_CHOICES)}")
    shares = normalize_ratios(ratios) if protocol is None else None
    crops, stats = load_crops(input_dir)
    check_output(input_dir, output, overwrite)
    table = read_protocol(protocol) if protocol is not None else None
    kept, removed = filter_crops(crops, input_dir, rules, workers)
    require_both_classes(kept, input_dir, stats, removed, "the quality filter")
    dropped = None
    if table is None:
        assignment = assign_groups(group_sizes(kept), shares, seed)
    else:
        assignment = apply_protocol({c.group for c in kept}, table, protocol, unlisted)
        out = [c for c in kept if c.group not in assignment]
        dropped = {"groups": len({c.group for c in out}), "videos": len({c.video_id for c in out}),
                   "crops": len(out)}
        kept = [c for c in kept if c.group in assignment]
        require_both_classes(kept, input_dir, stats, removed, "leaving out unlisted groups")
    rows = make_rows(kept, assignment)
    leak = check_no_leak(rows)
    summary = summarize(rows)
    report = {
        "input": str(input_dir), "method": "ratios" if table is None else "protocol",
        "seed": seed, "ratios": dict(zip(SPLIT_NAMES, shares, strict=True)) if shares else None,
        "protocol": str(protocol) if protocol is not None else None,
        "filter": {"min_face": rules.min_face, "min_sharpness": rules.min_sharpness,
                   "min_confidence": rules.min_confidence, "max_per_video": rules.max_per_video,
                   "crops_in": len(crops), "removed": removed, "crops_kept": len(kept)},
        "preprocess": stats.pop("preprocess"),
        "videos": {**stats, "videos_kept": summary["all"]["videos"]},
        "dropped_unlisted": dropped, "splits": summary, "leak_check": {"passed": True, **leak},
        "warnings": class_warnings(summary)}
    for warning in report["warnings"]:
        log.warning("%s", warning)
    write_output(input_dir, output, rows, report, copy=copy)
    return report

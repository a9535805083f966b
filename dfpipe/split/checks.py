"""Checks and counts of a split before it is written: rows, leaks, class and group warnings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES, label_id
from dfpipe.core.splittable import SPLIT_NAMES
from dfpipe.split.manifest_input import VideoRecord
from dfpipe.split.quality import FaceCrop


def make_rows(crops: Iterable[FaceCrop], assignment: dict[str, str]) -> list[dict[str, Any]]:
    """The split table: one row per kept crop, sorted by its path in the split tree."""
    rows = []
    for c in crops:
        split = assignment[c.group]
        rows.append({
            "path": f"{split}/{c.label}/{c.video_id}/{Path(c.file).name}", "split": split,
            "label": c.label, "label_id": label_id(c.label), "video_id": c.video_id,
            "group": c.group, "group_rule": c.group_rule, "frame": c.frame, "face": c.face,
            "face_size": c.face_size,
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




def check_ungrouped(count: int, allow: bool) -> None:
    """Refuse fakes with no known source unless the user accepts the leak risk."""
    if count and not allow:
        raise PipelineError(
            f"{count} fake video(s) have no known source (each is its own group, so the face "
            "it shows may also sit in another split): give their sources with --labels "
            "(path,label,group; the group may list several ids, e.g. 519|515), or pass "
            "--allow-ungrouped-fakes to split anyway")


def group_rule_counts(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per split: how many videos each group rule joined (``self``: no source known)."""
    videos = {r["video_id"]: (r["split"], r.get("group_rule") or "self") for r in rows}
    out: dict[str, dict[str, int]] = {s: {} for s in SPLIT_NAMES}
    for split, rule in sorted(videos.values()):
        out[split][rule] = out[split].get(rule, 0) + 1
    return out


def dropped_videos(records: Sequence[VideoRecord], kept: Iterable[FaceCrop],
                   crops_in: Iterable[FaceCrop],
                   assignment: dict[str, str]) -> list[dict[str, Any]]:
    """Videos of the manifest that no split row holds, with their split (by group) and why."""
    kept_ids = {c.video_id for c in kept}
    had = Counter(c.video_id for c in crops_in)
    rows = []
    for v in records:
        if v.video_id in kept_ids or v.group not in assignment:
            continue
        if v.status != "ok":
            reason, detail = v.status, v.message
        elif had[v.video_id]:
            reason = "filtered"
            detail = f"all {had[v.video_id]} crops removed by the quality filter"
        else:
            reason, detail = "no_face", "the manifest lists no crop"
        rows.append({"split": assignment[v.group], "video_id": v.video_id, "label": v.label,
                     "group": v.group, "group_rule": v.group_rule, "relpath": v.relpath,
                     "reason": reason, "detail": detail})
    return sorted(rows, key=lambda r: (SPLIT_NAMES.index(r["split"]), r["video_id"]))


def dropped_counts(dropped: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per split: dropped videos by reason."""
    out: dict[str, dict[str, int]] = {s: {} for s in SPLIT_NAMES}
    for row in dropped:
        out[row["split"]][row["reason"]] = out[row["split"]].get(row["reason"], 0) + 1
    return out

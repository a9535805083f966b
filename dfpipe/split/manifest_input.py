"""Read the preprocess output for split.py: every crop of finished videos, joined into groups.

Groups are recomputed here over every record of every manifest (and an optional labels
CSV), as connected components of the identities each video involves
(:mod:`dfpipe.extract.identities`),
so shards and resumed runs are joined as one dataset.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES, label_id
from dfpipe.core.manifest import manifest_paths, read_manifests
from dfpipe.extract.identities import (
    SELF_RULE,
    LabelRow,
    connect,
    is_ungrouped_fake,
    merge_identities,
    name_identities,
    target_and_source,
)
from dfpipe.split.quality import FaceCrop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRecord:
    """One manifest video with its joined group, whatever its status (for coverage)."""

    video_id: str
    label: str
    group: str
    group_rule: str
    relpath: str
    status: str
    message: str
    identities: tuple[str, ...] = ()


def record_identities(rec: dict[str, Any], labels: dict[str, LabelRow] | None = None,
                      group_by: str = "identity") -> tuple[list[str], str]:
    """Identities of a manifest record (its own, a labels CSV's, its name's) and the rules.

    ``group_by="target"`` leaves out the source identity a fake's name gives (and the
    preprocess-time group, which chained through it), so fakes join their target only.
    """
    own = [str(i) for i in rec.get("identities") or []]
    relpath = str(rec.get("relpath") or "")
    recorded = str(rec.get("group") or rec["video_id"])
    if group_by == "target":
        _, source = target_and_source(Path(relpath).stem, str(rec.get("label")))
        own = [i for i in own if i != source]
        recorded = recorded if not own and recorded != source else ""
    found: list[tuple[Sequence[str], str]] = [
        ([*own, recorded] if recorded else own, str(rec.get("group_rule") or SELF_RULE))]
    row = labels.get(relpath) if labels else None
    if row is not None and row.ids:
        found.append((row.ids, "labels_csv"))
    named, rule = name_identities(Path(relpath).stem, str(rec.get("label"))) if relpath \
        else ([], None)
    if rule and group_by == "target":
        target, _ = target_and_source(Path(relpath).stem, str(rec.get("label")))
        named = [target] if target else named
    if rule:
        found.append((named, rule))
    ids, rules = merge_identities(found)
    return ids or [str(rec["video_id"])], rules


def load_crops(root: Path, labels: dict[str, LabelRow] | None = None,
               group_by: str = "identity") -> tuple[list[FaceCrop], dict[str, Any]]:
    """Every crop the manifest lists for finished videos, and counts of videos by status.

    ``stats['records']`` holds every video (any status) with its group, so the split can
    say which videos it could not score; ``labels`` (a labels CSV keyed by the manifest's
    ``relpath``) adds identities; ``group_by`` is ``identity`` (every identity a video
    involves) or ``target`` (:func:`record_identities`).
    """
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"input folder not found: {root} (run preprocess.py --output {root})")
    if not any(root.iterdir()):
        raise PipelineError(f"input folder is empty: {root} (run preprocess.py --output {root})")
    if not manifest_paths(root):
        raise PipelineError(f"{root} has no manifest.jsonl, so it is not a preprocess.py output "
                            f"(run preprocess.py --output {root}, or for a folder of face crops "
                            "give its labels CSV with --labels)")
    records = sorted(read_manifests(root), key=lambda r: r["video_id"])
    if not records:
        raise PipelineError(f"the manifest in {root} lists no finished video yet "
                            "(wait for preprocess.py to finish a video)")
    identities, rules = {}, {}
    for rec in records:
        identities[rec["video_id"]], rules[rec["video_id"]] = record_identities(
            rec, labels, group_by)
    groups = connect(identities)
    crops: list[FaceCrop] = []
    videos: list[VideoRecord] = []
    status = Counter()
    videos_by_label = Counter()
    for rec in records:
        vid = rec["video_id"]
        state = rec.get("status", "ok")
        status[state] += 1
        try:
            label = CLASS_NAMES[label_id(rec["label"])]
            videos.append(VideoRecord(vid, label, groups[vid], rules[vid],
                                      str(rec.get("relpath") or ""), state,
                                      str(rec.get("message") or ""),
                                      tuple(identities[vid])))
            if state != "ok":
                continue
            crops.extend(_crop(rec, c, label, groups[vid], rules[vid])
                         for c in rec.get("crops", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"manifest record of {vid} in {root} is malformed "
                                f"({type(exc).__name__}: {exc}); re-run preprocess.py") from None
        videos_by_label[label] += 1
    ungrouped = sum(is_ungrouped_fake(v.label, v.group_rule) for v in videos)
    stats = {"videos_in_manifest": len(records),
             "videos_by_status": dict(sorted(status.items())),
             "ok_videos_by_label": {name: videos_by_label[name] for name in CLASS_NAMES},
             "ungrouped_fakes": ungrouped,
             "preprocess": preprocess_settings(records), "records": videos}
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


def _crop(rec: dict[str, Any], crop: dict[str, Any], label: str, group: str,
          rule: str) -> FaceCrop:
    return FaceCrop(file=str(crop["file"]), label=label, video_id=str(rec["video_id"]),
                    group=group, frame=int(crop["frame"]), face=int(crop["face"]),
                    face_size=float(crop["face_size"]), confidence=float(crop["confidence"]),
                    group_rule=rule,
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



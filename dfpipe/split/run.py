"""Leak-free train/val/test split of face crops: whole identity groups go to one split.

Frames of one video, and every video that involves the same person (a real video, the
fakes made from it and the fakes that pasted its face elsewhere), share a group. Splitting
crops or videos at random lets the model meet the same face in train and test, which
inflates accuracy; here the unit is the group, the result is checked for leaks before
anything is written, and the output appears atomically. This module only orchestrates:
reading (:mod:`splitinput`), assigning (:mod:`assignment`), checking (:mod:`splitcheck`)
and writing (:mod:`splitwrite`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.splittable import SPLIT_NAMES
from dfpipe.extract.identities import read_labels_csv
from dfpipe.split import grouping, protocols
from dfpipe.split.assign import (
    DEFAULT_RATIOS,
    DEFAULT_SEED,
    UNLISTED_CHOICES,
    apply_protocol,
    assign_groups,
    group_sizes,
    normalize_ratios,
    place_orphans,
    protocol_splits,
    read_protocol,
)
from dfpipe.split.checks import (
    check_no_leak,
    check_ungrouped,
    class_warnings,
    dropped_counts,
    dropped_videos,
    group_rule_counts,
    make_rows,
    summarize,
)
from dfpipe.split.manifest_input import load_crops, require_both_classes
from dfpipe.split.quality import MIN_CONFIDENCE, FaceCrop, QualityRules, filter_crops
from dfpipe.split.write import (
    check_output,
    write_output,
)

log = logging.getLogger(__name__)


def resolve_rules(rules: QualityRules, preprocess: dict[str, Any] | None) -> tuple[
        QualityRules, str]:
    """Fill ``min_confidence`` left unset with the one preprocess used (from the manifest)."""
    if rules.min_confidence is not None:
        return rules, "split.py --min-confidence"
    used = (preprocess or {}).get("min_confidence")
    if isinstance(used, int | float):
        return replace(rules, min_confidence=float(used)), "the manifest (preprocess's value)"
    return replace(rules, min_confidence=MIN_CONFIDENCE), "the default (manifest does not say)"


def run_split(input_dir: Path, output: Path, *, rules: QualityRules | None = None,
              ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED,
              protocol: Path | None = None, unlisted: str = "error", copy: bool = False,
              overwrite: bool = False, workers: int | None = None,
              labels: Path | None = None, allow_ungrouped_fakes: bool = False,
              crop: dict[str, Any] | None = None,
              loader: Callable[[Path], tuple[list[FaceCrop], dict[str, Any]]] | None = None,
              group_by: str = "identity") -> dict[str, Any]:
    """Filter, split by group, check for leaks, write ``output``; return the report.

    ``loader`` reads another input than a preprocess.py output (a crops folder,
    :mod:`dfpipe.split.folder_input`); it returns what :func:`load_crops` returns.

    ``labels`` (path,label[,group] keyed by the manifest's relpath) adds identities;
    ``crop`` (margin, size, detector given to split.py) fills crop settings the manifest
    does not record, so the model's metadata states them. ``group_by`` ``target`` groups
    fakes by target identity only (:mod:`dfpipe.split.grouping`).
    """
    input_dir, output = Path(input_dir), Path(output)
    rules = rules or QualityRules(min_confidence=None)
    if unlisted not in UNLISTED_CHOICES:
        raise PipelineError(f"--unlisted must be one of {', '.join(UNLISTED_CHOICES)}")
    if group_by not in grouping.GROUP_BY:
        raise PipelineError(f"--group-by must be one of {', '.join(grouping.GROUP_BY)}")
    if group_by == "target" and loader is not None:
        raise PipelineError("--group-by target reads the fakes' names in a preprocess manifest; "
                            "a crops folder's groups come from its labels CSV (--group-column)")
    protocol = protocols.protocol_path(protocol) if protocol is not None else None
    official = protocols.read_official(protocol) if protocol is not None else None
    if official is not None:
        group_by = official.group_by if group_by == "identity" else group_by
    shares = normalize_ratios(ratios) if protocol is None else None
    if loader is not None:
        crops, stats = loader(input_dir)
    else:
        label_rows = read_labels_csv(labels, input_dir) if labels is not None else None
        crops, stats = load_crops(input_dir, label_rows, group_by)
    check_output(input_dir, output, overwrite)
    check_ungrouped(stats["ungrouped_fakes"], allow_ungrouped_fakes)
    table = read_protocol(protocol) if protocol is not None and official is None else None
    preprocess, crop_source = merge_crop_settings(stats.pop("preprocess"), crop)
    rules, confidence_source = resolve_rules(rules, preprocess)
    kept, removed = filter_crops(crops, input_dir, rules, workers)
    require_both_classes(kept, input_dir, stats, removed, "the quality filter")
    dropped = None
    records = stats.pop("records")
    if official is not None:
        kept, records, assignment_all, official_report = protocols.assign_official(
            official, kept, records, normalize_ratios(ratios), seed)
        assignment = {c.group: assignment_all[c.group] for c in kept}
    elif table is None:
        grouping.check_collapse(group_sizes(kept), group_by)
        assignment = assign_groups(group_sizes(kept), shares, seed)
        orphans = {v.group for v in records} - set(assignment)
        assignment_all = {**place_orphans(orphans, shares, seed), **assignment}
    else:
        members: dict[str, set[str]] = {}
        for v in records:
            members.setdefault(v.group, set()).update(v.identities)
        assignment = apply_protocol({c.group for c in kept}, table, protocol, unlisted, members)
        out = [c for c in kept if c.group not in assignment]
        dropped = {"groups": len({c.group for c in out}), "videos": len({c.video_id for c in out}),
                   "crops": len(out)}
        kept = [c for c in kept if c.group in assignment]
        require_both_classes(kept, input_dir, stats, removed, "leaving out unlisted groups")
        assignment_all = {**protocol_splits(members, table, protocol, members), **assignment}
    rows = make_rows(kept, assignment)
    leak = check_no_leak(rows)
    summary = summarize(rows)
    uncovered = dropped_videos(records, kept, crops, assignment_all)
    report = {
        "input": str(input_dir), "method": "ratios" if protocol is None else "protocol",
        "seed": seed, "ratios": dict(zip(SPLIT_NAMES, shares, strict=True)) if shares else None,
        "protocol": str(protocol) if protocol is not None else None,
        "labels": str(labels) if labels is not None else None,
        "filter": {"min_face": rules.min_face, "min_sharpness": rules.min_sharpness,
                   "min_confidence": rules.min_confidence,
                   "min_confidence_source": confidence_source,
                   "max_per_video": rules.max_per_video,
                   "crops_in": len(crops), "removed": removed, "crops_kept": len(kept)},
        "preprocess": preprocess, "crop_source": crop_source,
        "videos": {**stats, "videos_kept": summary["all"]["videos"]},
        "ungrouped_fakes": stats["ungrouped_fakes"],
        "group_rules": group_rule_counts(rows),
        "dropped_videos": dropped_counts(uncovered),
        "dropped_unlisted": dropped, "splits": summary, "leak_check": {"passed": True, **leak},
        "warnings": class_warnings(summary), "group_by": group_by,
        "target_leak": grouping.source_leak(records, assignment_all)
        if group_by == "target" else None,
        "official": official_report if official is not None else None}
    for warning in report["warnings"]:
        log.warning("%s", warning)
    write_output(input_dir, output, rows, report, copy=copy, dropped=uncovered)
    return report


def merge_crop_settings(recorded: dict[str, Any] | None, given: dict[str, Any] | None
                        ) -> tuple[dict[str, Any] | None, str | None]:
    """The crop settings to record for the model, and where they came from.

    What the manifest records wins; a value given to split.py that contradicts it is
    refused (the crops were made otherwise); one the manifest lacks is added.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if not given:
        return recorded, "the manifest" if recorded else None
    merged = dict(recorded or {})
    for key, value in given.items():
        if key in merged and merged[key] is not None and merged[key] != value:
            raise PipelineError(f"--{key.replace('_', '-')} {value} contradicts the manifest, "
                                f"whose crops were made with {key} {merged[key]}: leave it out")
        merged[key] = value
    source = "split.py options" if not recorded else "the manifest and split.py options"
    return merged, source

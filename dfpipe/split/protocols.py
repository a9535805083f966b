"""Official protocols read from a dataset's own files: the test set is fixed, the rest is split.

Published numbers are measured on each dataset's own test list, so a split that redraws the
test set cannot be compared with them. Recognised, as the datasets ship them:

- Celeb-DF v1/v2 ``List_of_testing_videos.txt`` (lines ``LABEL path``, label 1 = real): the
  listed videos are the test set, exactly; the rest is split into train/val by target
  identity. The official list shares people with the rest (it was drawn by video), so the
  report states that known identity overlap instead of refusing it.
- the DFDC preview's ``dataset.json`` (``set`` train/test) and a DFDC ``metadata.json``
  (``split``): the videos marked test form the test set.

FaceForensics++'s train/val/test.json pairs place whole groups and are read by
:func:`dfpipe.split.assign.read_protocol`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.extract.layouts import CELEBDF_TEST_LIST, DFDC_METADATA, DFDCP_INDEX, read_json
from dfpipe.split.assign import group_sizes
from dfpipe.split.quality import FaceCrop

log = logging.getLogger(__name__)

LIST_LINE = re.compile(r"^\s*([01])\s+(\S.*?)\s*$")
TEST = "test"


@dataclass(frozen=True)
class OfficialProtocol:
    """A dataset's own test list: video path (relative to the dataset root) -> label."""

    name: str
    file: Path
    test: dict[str, str]
    group_by: str = "identity"


def protocol_path(path: Path) -> Path:
    """``path``, or the ``splits/`` folder of a FaceForensics++ root holding the json files
    (where the FaceForensics repository keeps them), so the dataset root is enough."""
    path = Path(path)
    if path.is_dir() and not (path / "train.json").is_file() and (
            path / "splits" / "train.json").is_file():
        return path / "splits"
    return path


def find_official(path: Path) -> Path | None:
    """The dataset's own protocol file at ``path`` (the file, or a root holding it)."""
    path = Path(path)
    if path.is_file() and (path.suffix.lower() == ".txt" or path.name in (DFDCP_INDEX,
                                                                          DFDC_METADATA)):
        return path
    if path.is_dir():
        for name in (CELEBDF_TEST_LIST, DFDCP_INDEX, DFDC_METADATA):
            if (path / name).is_file():
                return path / name
    return None


def read_official(path: Path) -> OfficialProtocol | None:
    """The official test list ``path`` names, or None when it is another kind of protocol."""
    file = find_official(path)
    if file is None:
        return None
    if file.suffix.lower() == ".txt":
        return OfficialProtocol("Celeb-DF List_of_testing_videos", file, _read_list(file),
                                group_by="target")
    field, name = ("set", "DFDC preview") if file.name == DFDCP_INDEX else ("split", "DFDC")
    test = {}
    for rel, entry in read_json(file).items():
        if isinstance(entry, dict) and str(entry.get(field, "")).lower() == TEST:
            test[rel] = str(entry.get("label", "")).lower()
    if not test:
        raise PipelineError(f"--protocol {file} marks no video as test ({field}: test): it "
                            "fixes no test set; split by ratios instead (leave out --protocol)")
    return OfficialProtocol(f"{name} {file.name}", file, test)


def _read_list(file: Path) -> dict[str, str]:
    test: dict[str, str] = {}
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read protocol file {file}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = LIST_LINE.match(line)
        if not match:
            raise PipelineError(f"{file} line {number}: {line.strip()!r} is not 'LABEL path' "
                                "(label 1 = real, 0 = fake), as Celeb-DF's list has it")
        test[match.group(2)] = "real" if match.group(1) == "1" else "fake"
    if not test:
        raise PipelineError(f"{file} lists no video: pass Celeb-DF's List_of_testing_videos.txt")
    return test


def list_matcher(listed: Iterable[str]) -> Callable[[str], str | None]:
    """relpath -> the list entry it is (the entry, or a path ending in it), else None."""
    by_name: dict[str, list[str]] = {}
    for entry in listed:
        by_name.setdefault(Path(entry).name, []).append(entry)

    def match(relpath: str) -> str | None:
        for entry in by_name.get(Path(relpath).name, []):
            if relpath == entry or relpath.endswith("/" + entry):
                return entry
        return None
    return match


def assign_official(protocol: OfficialProtocol, kept: Sequence[FaceCrop],
                    records: Sequence[Any], ratios: Sequence[float], seed: int
                    ) -> tuple[list[FaceCrop], list[Any], dict[str, str], dict[str, Any]]:
    """Crops and records regrouped, group -> split for every group, and the report entry.

    A group with videos on both sides of the list is cut in two (``<group>@test`` holds
    its test videos), so every video keeps one split and the leak check still holds; the
    identities both sides share are the protocol's known overlap, counted in the report.
    """
    match = list_matcher(protocol.test)
    found: dict[str, str] = {}
    for rec in records:
        entry = match(rec.relpath)
        if entry is None:
            continue
        if protocol.test[entry] in CLASS_NAMES and protocol.test[entry] != rec.label:
            raise PipelineError(f"{protocol.file} labels {entry} {protocol.test[entry]} but the "
                                f"manifest says {rec.label}: check that --protocol belongs to "
                                "this dataset")
        found[rec.video_id] = entry
    if not found:
        raise PipelineError(f"none of the {len(protocol.test)} test videos of {protocol.file} "
                            "is in the manifest: preprocess the dataset's root as it unpacks, "
                            "so the paths match the list")
    sides: dict[str, set[bool]] = {}
    for rec in records:
        sides.setdefault(rec.group, set()).add(rec.video_id in found)
    cut = {g for g, s in sides.items() if len(s) == 2}

    def group_of(video_id: str, group: str) -> str:
        return f"{group}@{TEST}" if video_id in found and group in cut else group

    records = [replace(r, group=group_of(r.video_id, r.group)) for r in records]
    kept = [replace(c, group=group_of(c.video_id, c.group)) for c in kept]
    test_groups = {r.group for r in records if r.video_id in found}
    rest = [c for c in kept if c.group not in test_groups]
    assignment = dict.fromkeys(test_groups, TEST)
    assignment.update(_train_val(group_sizes(rest), ratios, seed))
    for group in sorted({r.group for r in records} - set(assignment)):
        assignment[group] = "train"  # no kept crop: its videos count as uncovered in train
    people = {side: {i for r in records if (r.video_id in found) == side for i in r.identities}
              for side in (True, False)}
    overlap = people[True] & people[False]
    missing = len(protocol.test) - len(set(found.values()))
    report = {"name": protocol.name, "file": str(protocol.file),
              "test_listed": len(protocol.test), "test_in_manifest": len(found),
              "test_listed_missing": missing, "groups_cut": len(cut),
              "identity_overlap": len(overlap), "identities": len(people[True] | people[False]),
              "group_by": protocol.group_by,
              "note": f"test set fixed by {protocol.file.name} ({len(found)} videos, "
                      f"{missing} listed but not in the manifest); train/val split by "
                      f"{protocol.group_by} group; identities that appear in both test and "
                      f"train/val (the protocol's own overlap): {len(overlap)}"}
    if missing:
        log.warning("%d videos listed in %s are not in the manifest", missing, protocol.file)
    return kept, records, assignment, report


def _train_val(sizes: dict[str, np.ndarray], ratios: Sequence[float],
               seed: int) -> dict[str, str]:
    """Groups -> train or val, seeded, val near its share of each class's videos."""
    names = sorted(sizes)
    if len(names) < 2:
        raise PipelineError(f"only {len(names)} group(s) outside the official test set: train "
                            "and val need at least one each (add videos)")
    share = ratios[1] / (ratios[0] + ratios[1])
    videos = np.array([sizes[n][2:4] for n in names], dtype=float)
    target = share * videos.sum(axis=0)
    scale = np.where(target > 0, target, 1.0)
    fill = np.zeros(2)
    val = np.zeros(len(names), dtype=bool)
    for i in np.random.default_rng(seed).permutation(len(names)):
        after = np.abs(fill + videos[i] - target) / scale
        if after.sum() < (np.abs(fill - target) / scale).sum():
            val[i] = True
            fill += videos[i]
    for k in range(2):  # val holds each class present, train keeps a group
        if videos[:, k].sum() and not videos[val, k].sum():
            pick = min((i for i in range(len(names)) if videos[i, k] and not val[i]),
                       key=lambda i: (videos[i].sum(), names[i]))
            val[pick] = True
    if val.all():
        val[int(np.argmax(videos.sum(axis=1)))] = False
    return {n: "val" if v else "train" for n, v in zip(names, val, strict=True)}


"""Refuse an identity grouping that collapsed, and count the leak target-only grouping accepts.

Celeb-DF names a fake ``idA_idB_NNNN`` (target A, source B): joining every identity a video
involves chains every celebrity into one group (on the real file list, 1,062 of 1,362
videos), so one split gets every fake and training fails later with a puzzling error. Split
stops instead and names the ways out. Grouping fakes by their target alone keeps each
person's real and forged videos together; the source's face may then sit in another split,
and the report says for how many source identities that happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.extract.identities import target_and_source

GROUP_BY: tuple[str, str] = ("identity", "target")
COLLAPSE_SHARE = 0.5
MIN_CLASS_VIDEOS = 4


def check_collapse(sizes: Mapping[str, np.ndarray], group_by: str = "identity") -> None:
    """Refuse when one group holds more than half of a class's videos (``sizes`` as
    :func:`dfpipe.split.assign.group_sizes` gives them: real/fake crops, real/fake videos)."""
    if not sizes:
        return
    names = sorted(sizes)
    videos = np.array([sizes[n][2:4] for n in names], dtype=float)
    for k, label in enumerate(CLASS_NAMES):
        total = videos[:, k].sum()
        if total < MIN_CLASS_VIDEOS:
            continue
        biggest = int(videos[:, k].argmax())
        held = int(videos[biggest, k])
        if held > COLLAPSE_SHARE * total:
            way = ("use the dataset's official protocol (split.py --protocol, e.g. Celeb-DF's "
                   "List_of_testing_videos.txt)")
            if group_by != "target":
                way += ", or --group-by target (fakes join their target identity only)"
            raise PipelineError(
                f"identity group {names[biggest]} holds {held} of the {int(total)} {label} "
                f"videos ({len(names)} groups): the identities chain into one group, so a "
                f"split by group cannot put {label} videos in every split; {way}")


def source_leak(records: Iterable[Any], assignment: Mapping[str, str]) -> dict[str, Any]:
    """Source identities (a fake's pasted face) whose own videos sit in another split than
    the fake: the leak target-only grouping accepts. ``records`` are the split's videos
    (``relpath``, ``label``, ``group``, ``identities``); ``assignment`` maps group -> split."""
    records = list(records)
    splits_of: dict[str, set[str]] = {}
    for rec in records:
        for ident in rec.identities:
            if rec.group in assignment:
                splits_of.setdefault(ident, set()).add(assignment[rec.group])
    crossing: set[str] = set()
    fakes = 0
    for rec in records:
        _, source = target_and_source(Path(rec.relpath).stem, rec.label)
        own = assignment.get(rec.group)
        if source is None or own is None:
            continue
        if splits_of.get(source, set()) - {own}:
            crossing.add(source)
            fakes += 1
    sources = {target_and_source(Path(r.relpath).stem, r.label)[1] for r in records} - {None}
    return {"source_identities": len(sources), "source_identities_crossing": len(crossing),
            "fakes_with_crossing_source": fakes,
            "note": "fakes grouped by target identity only: a source identity's face is "
                    "pasted into fakes of another split"}

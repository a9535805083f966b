"""Score a dataset that was never split: its official test list where it has one, else all.

Cross-dataset results train on one dataset and only test on the others, so those need no
train/val/test split: ``evaluate.py --data PREPROCESSED`` reads the preprocess output
directly. The test videos are those the dataset's own files name (Celeb-DF's
``List_of_testing_videos.txt``, the DFDC preview's ``set: test``, FaceForensics++'s
``test.json`` pairs placed in the dataset root or its ``splits/`` folder); a dataset
without one is scored on every video, and the selection says which. A video where
preprocess found no face (or could not read it) is kept as uncovered: evaluate scores
it 0.5 and counts it as failed, never drops it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import SPLIT_TABLE
from dfpipe.core.labels import label_id
from dfpipe.core.manifest import manifest_paths, read_manifests
from dfpipe.core.splittable import Crop
from dfpipe.evaluate.coverage import Uncovered
from dfpipe.extract.identities import connect
from dfpipe.split.manifest_input import record_identities
from dfpipe.split.protocols import list_matcher, read_official

log = logging.getLogger(__name__)

FFPP_TEST_FILES = ("splits/test.json", "test.json")


@dataclass(frozen=True)
class TestOnly:
    """The crops and uncovered videos of a preprocess output's test selection."""

    crops: list[Crop]
    uncovered: list[Uncovered]
    protocol: str
    videos: int

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "videos": self.videos,
                "crops": len(self.crops), "uncovered": len(self.uncovered)}


def is_preprocessed(root: Path) -> bool:
    """A preprocess.py output (manifests) that split.py has not turned into a split folder."""
    root = Path(root)
    return bool(manifest_paths(root)) and not (root / SPLIT_TABLE).is_file()


def dataset_root(root: Path) -> Path | None:
    """The dataset folder preprocess read, as its run file states."""
    for run_file in sorted(Path(root).glob("run*.json")):
        try:
            given = json.loads(run_file.read_text(encoding="utf-8")).get("input")
        except (OSError, ValueError, AttributeError):
            continue
        if given and Path(given).is_dir():
            return Path(given)
    return None


def _official_test(records: list[dict[str, Any]], data: Path | None
                   ) -> tuple[set[str] | None, str]:
    """Video ids on the dataset's own test list, and the protocol's name (None: no list)."""
    if data is None:
        return None, "every video (the dataset root preprocess read is not found)"
    try:
        official = read_official(data)
    except PipelineError as exc:  # a DFDC part's metadata.json names no test video
        log.info("no official test list in %s: %s", data, exc)
        official = None
    if official is not None:
        match = list_matcher(official.test)
        chosen = {r["video_id"] for r in records if match(str(r.get("relpath") or ""))}
        return chosen, f"official test list {official.file.name} ({len(official.test)} listed)"
    for name in FFPP_TEST_FILES:
        file = data / name
        if file.is_file():
            ids = _pair_ids(file)
            chosen = {r["video_id"] for r in records
                      if r.get("identities") and set(map(str, r["identities"])) <= ids}
            return chosen, f"official test pairs {name} ({len(ids) // 2} pairs)"
    return None, "every video (the dataset has no official test list)"


def _pair_ids(file: Path) -> set[str]:
    try:
        pairs = json.loads(file.read_text(encoding="utf-8"))
        return {str(v) for pair in pairs for v in (pair if isinstance(pair, list) else [pair])}
    except (OSError, ValueError, TypeError) as exc:
        raise PipelineError(f"cannot read FaceForensics++ test pairs {file}: {exc}") from None


def load_test_only(root: Path) -> TestOnly:
    """The test selection of the preprocess output ``root`` as crops and uncovered videos."""
    root = Path(root)
    records = sorted(read_manifests(root), key=lambda r: r["video_id"])
    chosen, protocol = _official_test(records, dataset_root(root))
    if chosen is not None:
        records = [r for r in records if r["video_id"] in chosen]
        if not records:
            raise PipelineError(f"none of the manifest's videos in {root} is on the "
                                f"{protocol}: preprocess the dataset's root as it unpacks")
    # bootstrap clusters: target identities (sources would chain Celeb-DF into one group)
    groups = connect({r["video_id"]: record_identities(r, group_by="target")[0]
                      for r in records})
    crops: list[Crop] = []
    uncovered: list[Uncovered] = []
    for rec in records:
        label = label_id(rec["label"])
        group = groups[rec["video_id"]]
        if rec.get("status", "ok") != "ok" or not rec.get("crops"):
            uncovered.append(Uncovered(rec["video_id"], label, group,
                                       str(rec.get("status") or "no_face")))
            continue
        crops.extend(Crop(root / c["file"], label, rec["video_id"], group, "test",
                          int(c.get("frame", -1))) for c in rec["crops"])
    if not crops:
        raise PipelineError(f"no face crops in the test selection of {root} ({protocol}): "
                            "every video ended in no_face or error")
    log.info("%s: %s, %d videos", root, protocol, len(records))
    return TestOnly(crops, uncovered, protocol, len(records))

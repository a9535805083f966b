"""Find the identities each video involves, and join them into groups with union-find.

A FaceForensics++ fake ``519_515`` shows two people (target 519, source 515), so it must sit
in the same split as the real ``519`` and the real ``515``. Every piece of evidence adds
identities to a video; videos sharing any identity (directly or through others) form one
group, the connected component. The evidence, all of it used:

- a labels CSV (``path,label[,group]``; the group column may list several ids, ``519|515``);
- a DFDC ``metadata.json`` beside the video or beside the path a symlink resolves to (a
  fake involves its ``original``);
- a FaceForensics++ fake named ``TARGET_SOURCE`` (both ids);
- a Celeb-DF name: real ``idA_NNNN`` (idA), fake ``idA_idB_NNNN`` (idA and idB);
- a DFD (DeepFakeDetection) name: real ``01__scene`` (actor 01), fake ``01_02__scene__HASH``
  (actors 01 and 02);
- otherwise the video involves only itself (rule ``self``); a fake with rule ``self`` has no
  known source and is a leak risk, which preprocess counts and split refuses by default.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES

log = logging.getLogger(__name__)

FFPP_FAKE = re.compile(r"^(\d+)_(\d+)$")
CELEBDF_REAL = re.compile(r"^(id\d+)_\d+$")
CELEBDF_FAKE = re.compile(r"^(id\d+)_(id\d+)_\d+$")
DFD_REAL = re.compile(r"^(\d+)__[^_]")
DFD_FAKE = re.compile(r"^(\d+)_(\d+)__")
GROUP_COLUMNS = ("group", "source_video", "original")
ID_SEPARATOR = "|"
SELF_RULE = "self"
RULES: tuple[str, ...] = ("labels_csv", "dfdc_metadata", "ffpp_name", "celebdf_name", "dfd_name",
                          SELF_RULE)


@dataclass(frozen=True)
class LabelRow:
    label: str | None
    group: str | None

    @property
    def ids(self) -> list[str]:
        """The identities the group column lists (``519|515`` gives two)."""
        return cell_identities(self.group or "")


def read_labels_csv(path: Path, root: Path) -> dict[str, LabelRow]:
    """Rows of a labels CSV keyed by path relative to ``root`` (posix)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"labels file not found: {path}")
    rows: dict[str, LabelRow] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise PipelineError(f"{path}: a labels CSV needs a 'path' column (path,label[,group])")
        group_col = next((c for c in GROUP_COLUMNS if c in reader.fieldnames), None)
        for row in reader:
            rel = Path(row["path"].strip())
            if rel.is_absolute():
                try:
                    rel = rel.relative_to(root)
                except ValueError:
                    continue
            label = (row.get("label") or "").strip().lower() or None
            if label is not None and label not in CLASS_NAMES:
                raise PipelineError(f"{path}: label {label!r} for {rel} is not real or fake")
            group = (row.get(group_col) or "").strip() if group_col else ""
            rows[rel.as_posix()] = LabelRow(label, group or None)
    return rows


@lru_cache(maxsize=1024)
def _dfdc_metadata(folder: Path) -> dict[str, dict]:
    meta = folder / "metadata.json"
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable %s (%s)", meta, exc)
        return {}


def _dfdc_entry(video: Path) -> dict | None:
    """The video's entry in a metadata.json beside it, or beside its resolved (symlink) path."""
    places = [video]
    try:
        resolved = video.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        resolved = video
    if resolved != video:
        places.append(resolved)
    for place in places:
        entry = _dfdc_metadata(place.parent).get(place.name)
        if entry is not None:
            return entry
    return None


def stem_of(name: str) -> str:
    """A video's identity from its name: the file name without extension (``000.mp4`` and
    ``000`` are one identity)."""
    return Path(name).stem if Path(name).suffix else name


def cell_identities(text: str) -> list[str]:
    """The identities a group cell lists (``519|515`` gives two), as sorted unique stems."""
    return sorted({stem_of(p.strip()) for p in text.split(ID_SEPARATOR) if p.strip()})


def merge_identities(found: Sequence[tuple[Sequence[str], str]]) -> tuple[list[str], str]:
    """Every identity found and the rules that found them, in :data:`RULES` order and
    ``+``-joined; ``self`` only when no other rule found anything."""
    ids = sorted({str(i) for group, _ in found for i in group})
    rules = {r for _, rule in found for r in rule.split("+") if r}
    ordered = [r for r in RULES if r in rules] + sorted(rules - set(RULES))
    if len(ordered) > 1 and SELF_RULE in ordered:
        ordered.remove(SELF_RULE)
    return ids, "+".join(ordered)


def name_identities(stem: str, label: str) -> tuple[list[str], str | None]:
    """Identities a dataset's naming convention reveals, and the rule; ([], None) if none."""
    match = CELEBDF_FAKE.match(stem)
    if match:
        return [match.group(1), match.group(2)], "celebdf_name"
    match = CELEBDF_REAL.match(stem)
    if match:
        return [match.group(1)], "celebdf_name"
    match = FFPP_FAKE.match(stem)
    if label == "fake" and match:
        return [match.group(1), match.group(2)], "ffpp_name"
    match = DFD_FAKE.match(stem)
    if match:
        return [f"actor{match.group(1)}", f"actor{match.group(2)}"], "dfd_name"
    match = DFD_REAL.match(stem)
    if match:
        return [f"actor{match.group(1)}"], "dfd_name"
    return [], None


def target_and_source(stem: str, label: str) -> tuple[str | None, str | None]:
    """The target (the person whose video was forged) and the source (whose face was pasted)
    of a fake whose name says both (FF++ ``519_515``, Celeb-DF ``id0_id16_0000``, DFD
    ``01_02__...``); (None, None) otherwise. Grouping by target alone keeps each person's real
    and forged videos together without chaining every person through the sources."""
    named, rule = name_identities(stem, label)
    if label != "fake" or len(named) != 2:
        return None, None
    return named[0], named[1]


def find_identities(video: Path, label: str, labels: Mapping[str, LabelRow] | None = None,
                    rel: str | None = None) -> tuple[list[str], str]:
    """Every identity a video involves and the rules that found them (``+``-joined)."""
    stem = Path(video).stem
    found: list[tuple[Sequence[str], str]] = []
    row = labels.get(rel) if labels and rel is not None else None
    if row is not None and row.ids:
        found.append((row.ids, "labels_csv"))
    entry = _dfdc_entry(Path(video))
    if entry is not None and entry.get("original"):
        found.append(([stem, stem_of(entry["original"])], "dfdc_metadata"))
    named, rule = name_identities(stem, label)
    if rule:
        found.append((named, rule))
    return merge_identities(found or [([stem], SELF_RULE)])


def is_ungrouped_fake(label: str, rule: str) -> bool:
    """A fake whose source is unknown: nothing ties it to the real video it was made from."""
    return label == "fake" and rule == SELF_RULE


class UnionFind:
    """Disjoint sets over string ids; each set is named by its smallest id (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def connect(identities: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Key -> group: keys whose identities are connected share one group (the smallest id)."""
    lists = {key: list(ids) for key, ids in identities.items()}
    uf = UnionFind()
    for key, ids in lists.items():
        if not ids:
            raise ValueError(f"{key} involves no identity")
        for other in ids[1:]:
            uf.union(ids[0], other)
        uf.find(ids[0])
    return {key: uf.find(ids[0]) for key, ids in lists.items()}

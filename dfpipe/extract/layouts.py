"""Find the videos of a dataset as it unpacks, with label, dataset, method and compression.

Researchers download FaceForensics++, Celeb-DF or DFDC and should not have to sort them into
``real/`` and ``fake/``: each dataset's folder names (and DFDC's metadata files) already say
what every video is. The layouts, recognised from the root's own folders and files:

- ``real/`` + ``fake/`` (the project's own): the label is the folder; ``fake/<Method>/...``
  names the method, a ``raw``/``c23``/``c40`` folder the compression;
- FaceForensics++ (DFD included): ``original_sequences/{youtube,actors}/<comp>/videos`` and
  ``manipulated_sequences/<Method>/<comp>/videos`` (``DeepFakeDetection`` is DFD's);
- Celeb-DF v1/v2: ``Celeb-real``, ``YouTube-real`` (real), ``Celeb-synthesis`` (fake);
- DFDC: part folders (or the root) holding ``metadata.json`` (``label`` REAL/FAKE);
- DFDC preview: ``dataset.json`` at the root (``label`` real/fake, ``set`` train/test); the
  numeric id folder after ``original_videos``/``method_X`` is the person, so a fake joins its
  original's group;
- the DFDC test set: videos with a ``labels.csv`` of ``filename,label`` (1 = fake).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dfpipe.core.errors import PipelineError
from dfpipe.core.labels import CLASS_NAMES, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

COMPRESSIONS = frozenset({"raw", "c0", "c23", "c40"})
CELEBDF_FOLDERS = {"Celeb-real": "real", "YouTube-real": "real", "Celeb-synthesis": "fake"}
FFPP_FOLDERS = ("original_sequences", "manipulated_sequences")
DFD_FOLDERS = {"actors", "DeepFakeDetection"}
DFDC_METADATA = "metadata.json"
DFDCP_INDEX = "dataset.json"
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
PREVIEW_ID = re.compile(r"^\d+$")
DFDC_TEST_LABELS = "labels.csv"
DFDC_TEST_VALUES = {"0": "real", "1": "fake", "real": "real", "fake": "fake"}


@dataclass(frozen=True)
class LayoutVideo:
    """One video found under a dataset root and what its place there says about it."""

    path: Path
    rel: str
    label: str
    id_rel: Path
    dataset: str | None = None
    method: str | None = None
    compression: str | None = None
    identities: tuple[str, ...] = ()
    rule: str | None = None


def detect_layout(root: Path) -> str | None:
    """The layout name of ``root`` (``folders``, ``ffpp``, ``celebdf``, ``dfdcp``, ``dfdc``,
    ``dfdc_test``)."""
    root = Path(root)
    if any((root / name).is_dir() for name in CLASS_NAMES):
        return "folders"
    if any((root / name).is_dir() for name in FFPP_FOLDERS):
        return "ffpp"
    if any((root / name).is_dir() for name in CELEBDF_FOLDERS):
        return "celebdf"
    if (root / DFDCP_INDEX).is_file():
        return "dfdcp"
    if (root / DFDC_METADATA).is_file() or any(
            (part / DFDC_METADATA).is_file() for part in root.iterdir() if part.is_dir()):
        return "dfdc"
    if _header(root / DFDC_TEST_LABELS)[:1] == ["filename"]:
        return "dfdc_test"
    return None


def _header(file: Path) -> list[str]:
    if not file.is_file():
        return []
    with open(file, newline="", encoding="utf-8", errors="replace") as fh:
        return [c.strip().lower() for c in next(csv.reader(fh), [])]


def list_videos(root: Path) -> list[LayoutVideo]:
    """Every video of the dataset at ``root``: real/ then fake/, or a benchmark's by path."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"input folder not found: {root}")
    layout = detect_layout(root)
    if layout is None:
        raise PipelineError(
            f"{root} is no known dataset layout: put videos in {root}/real and {root}/fake, or "
            "give the root of FaceForensics++ (original_sequences/, manipulated_sequences/), "
            "Celeb-DF (Celeb-real/, Celeb-synthesis/), DFDC (part folders with metadata.json, "
            "or the test set's labels.csv of filename,label), or the DFDC preview (dataset.json)")
    found = list(LISTERS[layout](root))
    log.info("%s: %d videos in the %s layout", root, len(found), layout)
    # real/ before fake/ as always (--limit takes the first N); benchmarks by path
    return found if layout == "folders" else sorted(found, key=lambda v: v.rel)


def _videos(folder: Path) -> Iterator[Path]:
    """Video files below ``folder``; a link that leads nowhere is kept (its record says why)."""
    for path in sorted(folder.rglob("*")):
        broken = path.is_symlink() and not path.exists()
        if path.suffix.lower() in VIDEO_EXTENSIONS and (path.is_file() or broken):
            yield path


def _compression(parts: tuple[str, ...]) -> str | None:
    return next((p for p in parts if p in COMPRESSIONS), None)


def _folders(root: Path) -> Iterator[LayoutVideo]:
    for label in CLASS_NAMES:
        base = root / label
        if not base.is_dir():
            continue
        for path in _videos(base):
            inner = path.relative_to(base)
            method = inner.parts[0] if label == "fake" and len(inner.parts) > 1 else None
            yield LayoutVideo(path, path.relative_to(root).as_posix(), label, inner,
                              method=method, compression=_compression(inner.parts[:-1]))


def _ffpp(root: Path) -> Iterator[LayoutVideo]:
    for top in FFPP_FOLDERS:
        if not (root / top).is_dir():
            continue
        for path in _videos(root / top):
            rel = path.relative_to(root)
            if "masks" in rel.parts or len(rel.parts) < 3:
                continue
            kind = rel.parts[1]
            label = "real" if top == FFPP_FOLDERS[0] else "fake"
            dataset = "DFD" if kind in DFD_FOLDERS else "FaceForensics++"
            method = kind if label == "fake" else None
            yield LayoutVideo(path, rel.as_posix(), label, rel, dataset, method,
                              _compression(rel.parts[2:-1]))


def celebdf_name(root: Path) -> str:
    """``Celeb-DF-v1``/``Celeb-DF-v2`` when the root's name says which, else ``Celeb-DF``."""
    match = re.search(r"v([12])", root.resolve().name, re.IGNORECASE)
    return f"Celeb-DF-v{match.group(1)}" if match else "Celeb-DF"


def _celebdf(root: Path) -> Iterator[LayoutVideo]:
    dataset = celebdf_name(root)
    for folder, label in CELEBDF_FOLDERS.items():
        if not (root / folder).is_dir():
            continue
        for path in _videos(root / folder):
            rel = path.relative_to(root)
            yield LayoutVideo(path, rel.as_posix(), label, rel, dataset,
                              dataset if label == "fake" else None)


def read_json(file: Path) -> dict:
    """A JSON object from a dataset's own file; a one-line error when it is unreadable."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot read {file}: {exc} (re-download it)") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{file} must hold a JSON object keyed by video file")
    return data


def _label(entry: object, key: str, file: Path) -> str:
    value = str(entry.get("label", "") if isinstance(entry, dict) else "").strip().lower()
    if value not in CLASS_NAMES:
        raise PipelineError(f"{file}: {key} has label {value!r}, not REAL or FAKE: fix the file")
    return value


def _dfdc(root: Path) -> Iterator[LayoutVideo]:
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in folders:
        meta = folder / DFDC_METADATA
        if not meta.is_file():
            continue
        for name, entry in sorted(read_json(meta).items()):
            path = folder / name
            if not path.is_file():
                continue
            rel = path.relative_to(root)
            label = _label(entry, name, meta)
            yield LayoutVideo(path, rel.as_posix(), label, rel, "DFDC",
                              "DFDC" if label == "fake" else None)


def preview_identity(rel: str) -> str | None:
    """The person of a DFDC preview video: the numeric folder after its top folder."""
    parts = Path(rel).parts
    return parts[1] if len(parts) > 2 and PREVIEW_ID.match(parts[1]) else None


def _dfdcp(root: Path) -> Iterator[LayoutVideo]:
    index = root / DFDCP_INDEX
    for rel, entry in sorted(read_json(index).items()):
        path = root / rel
        if not path.is_file():
            continue
        label = _label(entry, rel, index)
        person = preview_identity(rel)
        method = Path(rel).parts[0] if label == "fake" else None
        yield LayoutVideo(path, Path(rel).as_posix(), label, Path(rel), "DFDCP", method,
                          identities=(person,) if person else (),
                          rule="dfdcp_folder" if person else None)


def _dfdc_test(root: Path) -> Iterator[LayoutVideo]:
    file = root / DFDC_TEST_LABELS
    with open(file, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in sorted(rows, key=lambda r: r.get("filename") or ""):
        name = (row.get("filename") or "").strip()
        label = DFDC_TEST_VALUES.get((row.get("label") or "").strip().lower())
        if label is None:
            raise PipelineError(f"{file}: {name} has label {row.get('label')!r}, not 0 (real) "
                                "or 1 (fake): fix the file")
        path = next((p for p in (root / name, *root.glob(f"*/{name}")) if p.is_file()), None)
        if path is None:
            continue
        rel = path.relative_to(root)
        yield LayoutVideo(path, rel.as_posix(), label, rel, "DFDC",
                          "DFDC" if label == "fake" else None)


LISTERS = {"folders": _folders, "ffpp": _ffpp, "celebdf": _celebdf, "dfdc": _dfdc,
           "dfdcp": _dfdcp, "dfdc_test": _dfdc_test}

"""Class order and label names, defined once: real=0, fake=1, scores are P(fake)."""

from __future__ import annotations

CLASS_NAMES: tuple[str, str] = ("real", "fake")
REAL, FAKE = 0, 1
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})


def label_id(name: str) -> int:
    """Map a class name to its index; refuse anything but 'real' or 'fake'."""
    key = str(name).strip().lower()
    if key not in CLASS_NAMES:
        raise ValueError(f"unknown label {name!r}: expected one of {', '.join(CLASS_NAMES)}")
    return CLASS_NAMES.index(key)

"""The crop settings a model was trained with, read from its metadata, so the app cuts faces
from a new video exactly as preprocess cut the training crops."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.extract import faces as facelib
from dfpipe.extract.run import Settings

FALLBACK_DETECTOR = "mtcnn"
SETTING_KEYS = tuple(f.name for f in fields(Settings))


def settings_from_metadata(meta: dict[str, Any], detector: str | None = None,
                           every: int | None = None, frames: int | None = None,
                           detect_max_side: int | None = None) -> tuple[Settings, str]:
    """The crop settings the model was trained with, and a sentence saying where they came from.

    The metadata's ``crop`` holds the preprocess settings (``crop.settings``, or the flat keys
    ``margin``/``size``/``detector``/``sampling``); when it is null, preprocess's defaults are
    used and the sentence says so. ``detector``/``every``/``frames`` override (and are named).
    """
    crop = meta.get("crop")
    values: dict[str, Any] = {}
    if isinstance(crop, dict):
        for part in (crop.get("sampling"), crop, crop.get("settings")):
            if isinstance(part, dict):
                values.update({k: v for k, v in part.items()
                               if k in SETTING_KEYS and v is not None})
        source = "the model metadata (crop settings recorded by preprocess)"
        missing = [k for k in ("margin", "size", "detector") if k not in values]
        if missing:
            source += f"; {', '.join(missing)} not recorded, preprocess defaults used"
    else:
        source = ("preprocess defaults: the model metadata records no crop settings (trained on "
                  "a folder without a preprocess report), so crops may differ from training")
    overrides = []
    if detector:
        if values.get("detector") != detector:
            values.pop("min_confidence", None)  # the recorded one belongs to another detector
        values["detector"] = detector
        overrides.append(f"detector {detector}")
    if every or frames:
        values["every"], values["frames"] = every, frames
        overrides.append(f"every {every}" if every else f"frames {frames}")
    if detect_max_side is not None:
        if detect_max_side < 0:
            raise PipelineError("--detect-max-side must be 0 (full size) or more pixels")
        values["detect_max_side"] = detect_max_side or None
        overrides.append(f"detect max side {detect_max_side or 'full size'}")
    if overrides:
        source += f"; overridden on the command line: {', '.join(overrides)}"
    if "detector" not in values:
        values["detector"] = FALLBACK_DETECTOR
        source += (f"; detector not recorded: {FALLBACK_DETECTOR} (its weights ship with it, so "
                   "it runs offline)")
    name = values["detector"]
    if name not in facelib.DETECTORS:
        raise PipelineError(f"detector {name!r} is unknown: choose one of "
                            f"{', '.join(facelib.DETECTORS)} with --detector")
    settings = Settings(**values).resolved()
    if settings.faces not in ("largest", "all"):
        raise PipelineError(f"crop setting faces={settings.faces!r} is not 'largest' or 'all'")
    return settings, source


def unknown_crop_settings(meta: dict[str, Any]) -> list[str]:
    """Which of margin, size and detector the model's metadata leaves unrecorded."""
    crop = meta.get("crop") if isinstance(meta.get("crop"), dict) else {}
    inner = crop.get("settings") if isinstance(crop.get("settings"), dict) else {}
    return [k for k in ("margin", "size", "detector")
            if crop.get(k) is None and inner.get(k) is None]


def recorded_detector(meta: dict[str, Any]) -> str | None:
    """The detector the model's crops were made with, when its metadata says."""
    crop = meta.get("crop")
    if not isinstance(crop, dict):
        return None
    inner = crop.get("settings") if isinstance(crop.get("settings"), dict) else {}
    return crop.get("detector") or inner.get("detector")

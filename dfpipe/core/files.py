"""The names of the files one stage writes and a later stage reads, in one place.

A later stage learns about an earlier one only from these files (see docs/formats.md), so
their names are shared here rather than copied into each stage.
"""

from __future__ import annotations

from pathlib import Path

SPLIT_TABLE = "split.csv"  # one row per kept crop: split, label, video, group, quality
SPLIT_REPORT = "split_report.json"  # what split.py did: settings, filter, counts, leaks
SPLIT_REPORT_TEXT = "split_report.txt"  # the same for a person
DROPPED_TABLE = "dropped_videos.csv"  # videos of the split that have no crop, and why
TRAINING_LOG = "training_log.csv"  # per-epoch metrics (Keras CSVLogger layout), beside the model
TRAINING_DONE = "training_done.json"  # written when training ends (the monitor's signal)
METADATA_ATTR = "dfpipe_metadata"  # the HDF5 attribute of a saved model holding its metadata


def metadata_sidecar(model_path: Path | str) -> Path:
    """The JSON copy of a model's metadata written beside it (readable without h5py)."""
    return Path(model_path).with_suffix(".json")

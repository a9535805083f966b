"""What every ONNX file the project writes shares (the classifier's and the face detector's),
and the file fingerprint an export records to know which source it came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

ONNX_OPSET = 18  # Resize with antialias and axes (opset 18) stands in for TF's ScaleAndTranslate
ONNX_IR_VERSION = 8  # what tf2onnx writes for opset 18; onnxruntime reads it


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Helpers for the export and ONNX Runtime tests: real and generated crops, a small Xception
with usable scores, and a tiny detector saved and exported once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from app_support import save_tiny_model
from conftest import SHARED_DATA

DFDC_FACES = SHARED_DATA / "dfdc_faces"


def real_crops(count: int = 12) -> list[np.ndarray]:
    """The first ``count`` crops of ../shared/data/dfdc_faces (224 px RGB), real and fake."""
    rows = (DFDC_FACES / "labels.csv").read_text(encoding="utf-8").splitlines()[1:count + 1]
    crops = []
    for row in rows:
        image = cv2.imread(str(DFDC_FACES / row.split(",")[0]), cv2.IMREAD_COLOR)
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return crops


def generated_crops(size: int, count: int = 6, seed: int = 0) -> list[np.ndarray]:
    """Noise, gradients and blocks: crops with fine texture and flat areas, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    crops = []
    for i in range(count):
        if i % 3 == 0:
            img = rng.integers(0, 256, (size, size, 3))
        elif i % 3 == 1:
            img = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                            np.full((size, size), 40.0 * i)], axis=-1)
        else:
            img = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((size // 8 + 1,) * 2 + (1,)))
            img = img[:size, :size]
        crops.append(np.clip(img, 0, 255).astype(np.uint8))
    return crops


def xception_model(size: int, crops: list[np.ndarray], seed: int = 0) -> Any:
    """Xception without ImageNet weights, its head scaled so P(fake) spreads over (0, 1) on
    ``crops`` (a random head on raw features would give 0 or 1 and hide any difference)."""
    import keras

    from dfpipe.models.build import build_classifier
    from dfpipe.models.registry import OUTPUT_NAME, get_backbone

    keras.utils.set_random_seed(seed)
    model = build_classifier(get_backbone("xception"), size, None, 0.0)
    features = keras.Model(model.input, model.get_layer(OUTPUT_NAME).input)
    feats = features.predict_on_batch(np.stack(crops).astype(np.float32))
    head = model.get_layer(OUTPUT_NAME)
    direction = np.random.default_rng(seed).normal(0, 1, head.kernel.shape)
    logits = (feats - feats.mean(0)) @ direction
    kernel = direction / (logits.std() + 1e-6)
    bias = -float((feats.mean(0) @ kernel)[0])
    head.set_weights([kernel.astype("float32"), np.array([bias], "float32")])
    return model


def save_model_file(model: Any, path: Path, size: int, backbone: str) -> Path:
    from dfpipe.core.labels import CLASS_NAMES
    from dfpipe.models.saving import save_model

    meta = {"class_names": list(CLASS_NAMES), "input_size": size, "backbone": backbone,
            "threshold": 0.5, "threshold_source": "set by the test", "crop": None}
    save_model(model, Path(path), meta)
    return Path(path)


def exported_tiny(folder: Path, bias: float = 0.3) -> tuple[Path, Path]:
    """A tiny detector saved as ``folder/tiny.h5`` and exported beside it: (h5, onnx)."""
    from dfpipe.models.export import export_model

    h5 = save_tiny_model(Path(folder) / "tiny.h5", bias=bias)
    return h5, export_model(h5, "onnx").path

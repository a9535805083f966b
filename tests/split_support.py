"""A tiny split folder as split.py writes it, for the tests of the stages that read one."""

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

SPLIT_COLUMNS = ["path", "split", "label", "label_id", "video_id", "group", "frame", "face",
                 "face_size", "confidence", "sharpness"]


def write_split(root: Path, videos: dict[str, dict[str, int]] | None = None, size: int = 72,
                frames: int = 2, seed: int = 0, report: bool = True) -> Path:
    """A tiny split folder as split.py lays it out (docs/formats.md), with split.csv.

    ``videos`` maps split -> label -> number of videos. Fakes carry a red square, so a model
    can learn something; every image is random otherwise.
    """
    videos = videos or {"train": {"real": 3, "fake": 3}, "val": {"real": 2, "fake": 2}}
    rng = np.random.default_rng(seed)
    rows = []
    for split, per_label in videos.items():
        for label, count in per_label.items():
            for v in range(count):
                video = f"{split}-{label}-{v}"
                for frame in range(frames):
                    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    if label == "fake":
                        image[size // 4: size // 2, size // 4: size // 2] = (255, 0, 0)
                    rel = f"{split}/{label}/{video}/{frame:06d}_00.jpg"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(root / rel), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    rows.append({"path": rel, "split": split, "label": label,
                                 "label_id": int(label == "fake"), "video_id": video,
                                 "group": video, "frame": frame, "face": 0, "face_size": 120,
                                 "confidence": 0.99, "sharpness": 80.0})
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "split.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SPLIT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if report:
        settings = {"every": 10, "frames": frames, "margin": 1.3, "size": size,
                    "detect_max_side": 640, "min_confidence": 0.9, "faces": 1,
                    "detector": "mtcnn"}
        (root / "split_report.json").write_text(json.dumps({"preprocess": settings}))
    return root


MANIFEST_SETTINGS = {"every": 5, "frames": None, "margin": 1.3, "size": 24,
                     "detect_max_side": 640, "min_confidence": 0.9, "faces": "largest"}


def add_manifest_video(root: Path, relpath: str, label: str, identities: list[str],
                       group: str, rule: str, n_crops: int = 2, status: str = "ok",
                       **extra: object) -> str:
    """One video's noise crops and its manifest record, as preprocess.py writes them
    (``extra``: dataset, method, compression); returns its video id."""
    from dfpipe.core.manifest import append_record

    digest = hashlib.sha1(relpath.encode("utf-8")).hexdigest()
    video_id = f"{Path(relpath).stem}-{digest[:8]}"
    rng = np.random.default_rng(int(digest[:8], 16))
    crops = []
    for i in range(n_crops if status == "ok" else 0):
        file = f"{label}/{video_id}/{i * 5:06d}_00.jpg"
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / file), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
        crops.append({"file": file, "frame": i * 5, "face": 0, "box": [10, 10, 110, 120],
                      "face_size": 110.0, "confidence": 0.99, "landmarks": None})
    append_record(root / "manifest.jsonl", {
        "video_id": video_id, "source": f"/data/{relpath}", "relpath": relpath, "label": label,
        "group": group, "group_rule": rule, "identities": identities, "fps": 25.0,
        "frames_read": 50, "frames_sampled": n_crops, "faces_saved": len(crops),
        "detector": "mtcnn", "settings": MANIFEST_SETTINGS, "seconds": 0.1, "status": status,
        "message": "" if status == "ok" else "no face", "crops": crops, **extra})
    return video_id

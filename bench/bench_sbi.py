#!/usr/bin/env python
"""Self-blending costs, printed as JSON: what ``train.py --sbi`` adds before the model runs.

landmarks: MTCNN keypoints on real dfdc_faces crops (what a split without stored keypoints
  pays once; later runs read the cache): crops/s and the share where a face was found.
blend: one dfpipe.train.sbi.blend.self_blend call per crop (transforms, mask, blend), ms per crop.
pipeline: training images/s out of the tf.data pipeline (decode, blend, augmentation,
  batching; no model) for --sbi against the plain pipeline (dfpipe.train.inputs) on the same crops.

Reproduce: python bench/bench_sbi.py --crops 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from dfpipe.core.images import read_rgb  # noqa: E402
from dfpipe.core.splittable import Crop  # noqa: E402
from dfpipe.train.inputs import make_dataset  # noqa: E402
from dfpipe.train.sbi.blend import self_blend  # noqa: E402
from dfpipe.train.sbi.inputs import make_sbi_dataset, plan  # noqa: E402
from dfpipe.train.sbi.landmarks import Landmarks, detect_landmarks  # noqa: E402

DFDC = REPO.parent / "shared" / "data" / "dfdc_faces"


def _images_per_second(ds, epochs: int) -> float:
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _y in ds:
            n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DFDC, help="dfdc_faces folder (real/ is read)")
    p.add_argument("--crops", type=int, default=128, help="real crops measured")
    p.add_argument("--batch-size", type=int, default=32, help="pipeline batch")
    p.add_argument("--epochs", type=int, default=2, help="pipeline passes timed")
    args = p.parse_args()
    paths = sorted((args.data / "real").glob("*.jpg"))[: args.crops]
    if not paths:
        print(f"error: no crops under {args.data / 'real'}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    images = [read_rgb(x) for x in paths]
    detect_landmarks(images[:2])  # build MTCNN outside the timing
    start = time.perf_counter()
    found = []
    for k in range(0, len(images), 16):
        found += detect_landmarks(images[k:k + 16])
    detect_s = time.perf_counter() - start
    fallback = np.median([f for f in found if f is not None], axis=0)
    points = np.stack([f if f is not None else fallback for f in found]).astype(np.float32)
    start = time.perf_counter()
    for i, (image, pts) in enumerate(zip(images, points, strict=True)):
        self_blend(image, pts, np.random.default_rng(i))
    blend_s = time.perf_counter() - start
    crops = [Crop(path=x, label=0, video_id=x.stem, group=x.stem, split="train") for x in paths]
    size = images[0].shape[0]
    sbi_ds = make_sbi_dataset(crops, Landmarks(points, np.zeros(len(crops), bool)),
                              plan(crops, 1.0, args.batch_size), size, seed=0)
    plain_ds = make_dataset(crops, size, args.batch_size, training=True, seed=0,
                            balance="none")
    _images_per_second(sbi_ds, 1)
    _images_per_second(plain_ds, 1)  # warm both (threads, file cache)
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": [round(v, 2) for v in load_before]},
        "crops": len(paths), "crop_size": size,
        "landmarks": {"crops_per_s": round(len(paths) / detect_s, 2),
                      "found_share": round(sum(f is not None for f in found) / len(found), 4)},
        "blend": {"ms_per_crop": round(1000 * blend_s / len(paths), 2)},
        "pipeline": {"sbi_images_per_s": round(_images_per_second(sbi_ds, args.epochs), 1),
                     "plain_images_per_s": round(_images_per_second(plain_ds, args.epochs), 1)},
    }
    result["machine"]["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

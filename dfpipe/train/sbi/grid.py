"""A picture of self-blending: real crops, their keypoints and hull, the mask, the fake.

``python -m dfpipe.train.sbi.grid --grid docs/sbi_grid.png --data FOLDER``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dfpipe.core.atomic import write_bytes_atomic
from dfpipe.core.errors import PipelineError, run_cli
from dfpipe.train.sbi.blend import inner_face_outline, order_five, self_blend


def _tile(image: np.ndarray, text: str, side: int) -> np.ndarray:
    tile = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1,
                cv2.LINE_AA)
    return tile


def grid_image(images: list[np.ndarray], landmarks: list[np.ndarray], seed: int = 0,
               side: int = 160) -> np.ndarray:
    """One row per face: the real image of the training pair (the crop, or the crop
    transformed when the draw put the transform on the target), the crop's keypoints and
    hull, the mask, the blended fake."""
    rows = []
    for i, (image, points) in enumerate(zip(images, landmarks, strict=True)):
        made = self_blend(image, points, np.random.default_rng([seed, i]))
        marked = image.copy()
        outline = np.round(inner_face_outline(points)).astype(np.int32)
        cv2.polylines(marked, [cv2.convexHull(outline)], True, (0, 255, 0), 1, cv2.LINE_AA)
        for x, y in order_five(points):
            cv2.circle(marked, (int(round(x)), int(round(y))), 2, (255, 0, 0), -1)
        grey = np.repeat((made.mask * 255).astype(np.uint8)[..., None], 3, axis=2)
        rows.append(np.hstack([
            _tile(made.target, "real (of the pair)", side), _tile(marked, "5 points + hull", side),
            _tile(grey, f"mask x{made.ratio:g}", side), _tile(made.blended, "self-blended", side)]))
    return np.vstack(rows)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise PipelineError(f"cannot encode the grid as PNG for {path}")
    return write_bytes_atomic(path, data.tobytes())


def main(argv: list[str] | None = None) -> int:
    from dfpipe.train.sbi.landmarks import example_faces

    parser = argparse.ArgumentParser(
        prog="python -m dfpipe.train.sbi.grid",
        description="Write a PNG grid of self-blended examples made from real face crops: per "
                    "row the real crop, its five keypoints with the inner-face hull, the "
                    "blending mask and the self-blended fake.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--grid", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--data", type=Path, required=True,
                        help="split folder (its train real crops), or a folder of crops (its "
                             "real/ sub-folder if any, else every image below it)")
    parser.add_argument("--rows", type=int, default=6, help="faces shown, one per row")
    parser.add_argument("--side", type=int, default=128, help="pixels per tile")
    parser.add_argument("--cache", type=Path, default=None,
                        help="landmark cache JSON to read and extend (none: detect only the "
                             "crops shown, write nothing)")
    parser.add_argument("--seed", type=int, default=0, help="picks the crops and the blends")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.side < 32:
        raise PipelineError("--rows must be >= 1 and --side >= 32")
    images, points, report = example_faces(args.data, args.rows, args.seed, args.cache)
    write_png(args.grid, grid_image(images, points, args.seed, args.side))
    print(f"wrote {args.grid}: {len(images)} faces from {args.data} (landmarks: {report})")
    return 0


if __name__ == "__main__":
    run_cli(main)

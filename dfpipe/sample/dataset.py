"""A small labelled video dataset made on the spot, offline, so every stage can be run and
tested without downloading anything.

Real videos film real face photographs that installed packages ship (scikit-image's
astronaut and camera man, matplotlib's Grace Hopper) with a moving, zooming, slightly
rotating camera, drifting light, sensor noise and JPEG/MPEG-4 compression. Each fake is
made from one real source video's photograph by a genuine blending forgery (see
``dfpipe.sample.forging``) and filmed with exactly the same camera, so the two differ only inside
the face. The sample proves that the pipeline runs end to end; it says nothing about
detecting real deepfakes, which needs a real dataset.

Layout (a user's ``dataset/``)::

    real/003.mp4            source video 003 (its own group)
    fake/003_003.mp4        self-blended fake of 003     (FaceForensics++ TARGET_SOURCE)
    fake/003_001.mp4        003 with the face of 001's person swapped in
    labels.csv              path,label,group (group = the target source, e.g. 003)
    sample.json             the parameters and counts
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dfpipe.core.errors import PipelineError, run_cli
from dfpipe.sample.camera import (
    DEFAULT_FPS,
    DEFAULT_SIZE,
    Shot,
    draw_shot,
    face_photos,
    render_frames,
    write_video,
)
from dfpipe.sample.forging import Face, face_swap, locate_face, self_blend

log = logging.getLogger(__name__)

DEFAULT_SOURCES = 36
DEFAULT_FAKES_PER_SOURCE = 1
DEFAULT_SECONDS = 2.0
METHODS: tuple[str, ...] = ("self_blend", "face_swap")
MARKER = "sample.json"
NOTE = ("Synthetic sample built from three stock photographs: it only proves that the pipeline "
        "runs. Real results need a real dataset (e.g. FaceForensics++, DFDC, Celeb-DF).")


@dataclass(frozen=True)
class Source:
    """One source video: a photograph, mirrored or not, filmed with one shot."""

    index: int
    photo: int
    flip: bool
    shot: Shot

    @property
    def name(self) -> str:
        return f"{self.index:03d}"


def _plan_sources(photos: list[np.ndarray], faces: list[Face], n_sources: int,
                  size: tuple[int, int], seed: int) -> list[Source]:
    sources = []
    for i in range(n_sources):
        p = i % len(photos)
        flip = (i // len(photos)) % 2 == 1
        face = faces[p].mirrored(photos[p].shape[1]) if flip else faces[p]
        shot = draw_shot(np.random.default_rng([seed, i]), face, photos[p].shape, size)
        sources.append(Source(index=i, photo=p, flip=flip, shot=shot))
    return sources


def _make_fake(target: Source, sources: list[Source], photos: list[np.ndarray],
               faces: list[Face], method: str, rng: np.random.Generator
               ) -> tuple[np.ndarray, str, Source]:
    """(manipulated photo, method used, donor source) for one fake of ``target``.
    Swaps need two frontal faces of different people; otherwise the fake is self-blended."""
    photo, face = photos[target.photo], faces[target.photo]
    generated = face.width * target.shot.scale * rng.uniform(0.2, 0.4)
    donors = [s for s in sources if s.photo != target.photo and faces[s.photo].frontal]
    if method == "face_swap" and face.frontal and donors:
        donor = donors[int(rng.integers(len(donors)))]
        fake, _ = face_swap(photo, face, photos[donor.photo], faces[donor.photo], rng, generated)
        return fake, "face_swap", donor
    fake, _ = self_blend(photo, face, rng, generated)
    return fake, "self_blend", target


def _film(photo: np.ndarray, face: Face, source: Source, n_frames: int,
          size: tuple[int, int], fps: float) -> list[np.ndarray]:
    if source.flip:
        photo, face = photo[:, ::-1], face.mirrored(photo.shape[1])
    return render_frames(np.ascontiguousarray(photo), face, source.shot, n_frames, size, fps)


def make_sample_dataset(out_dir: Path, n_sources: int = DEFAULT_SOURCES,
                        fakes_per_source: int = DEFAULT_FAKES_PER_SOURCE,
                        seconds: float = DEFAULT_SECONDS, size: tuple[int, int] = DEFAULT_SIZE,
                        fps: float = DEFAULT_FPS, seed: int = 0,
                        methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Build the sample dataset in ``out_dir`` (replacing an earlier sample there) and
    return its summary. Built in a temporary folder and renamed, so a killed run never
    leaves a half dataset; the same arguments give the same videos."""
    out_dir = Path(out_dir)
    n_frames = round(seconds * fps)
    _check_arguments(out_dir, n_sources, fakes_per_source, n_frames, size, fps, methods)
    started = time.monotonic()
    named = face_photos()
    photos = [image for _, image in named]
    faces = [locate_face(image) for image in photos]
    sources = _plan_sources(photos, faces, n_sources, size, seed)
    tmp = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    rows, used = [], {m: 0 for m in METHODS}
    try:
        for source in tqdm(sources, desc="sample videos", unit="source"):
            photo, face = photos[source.photo], faces[source.photo]
            path = f"real/{source.name}.mp4"
            write_video(tmp / path, _film(photo, face, source, n_frames, size, fps), fps)
            rows.append({"path": path, "label": "real", "group": source.name})
            for j in range(fakes_per_source):
                rng = np.random.default_rng([seed, source.index, 1000 + j])
                method = methods[(source.index + j) % len(methods)]
                fake, method, donor = _make_fake(source, sources, photos, faces, method, rng)
                path = _free_name(tmp, f"fake/{source.name}_{donor.name}")
                write_video(tmp / path, _film(fake, face, source, n_frames, size, fps), fps)
                rows.append({"path": path, "label": "fake", "group": source.name})
                used[method] += 1
        summary = {
            "note": NOTE, "seed": seed, "sources": n_sources, "fakes_per_source": fakes_per_source,
            "frames_per_video": n_frames, "fps": fps, "size": list(size),
            "videos": len(rows), "real": n_sources, "fake": len(rows) - n_sources,
            "groups": n_sources, "methods": used, "photos": [name for name, _ in named],
            "source_videos": [{"name": s.name, "photo": named[s.photo][0], "flip": s.flip,
                               "shot": asdict(s.shot)} for s in sources],
        }
        _write_labels(tmp / "labels.csv", rows)
        (tmp / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = {k: v for k, v in summary.items() if k != "source_videos"}
    summary.update(out_dir=str(out_dir), seconds=round(time.monotonic() - started, 2))
    log.info("sample dataset: %d real + %d fake videos in %s", summary["real"],
             summary["fake"], out_dir)
    return summary


def _check_arguments(out_dir: Path, n_sources: int, fakes_per_source: int, n_frames: int,
                     size: tuple[int, int], fps: float, methods: tuple[str, ...]) -> None:
    if n_sources < 1:
        raise PipelineError(f"--sources must be at least 1 (got {n_sources})")
    if fakes_per_source < 0:
        raise PipelineError(f"--fakes-per-source must be 0 or more (got {fakes_per_source})")
    if fps <= 0 or n_frames < 1:
        raise PipelineError("--seconds and --fps must give at least one frame")
    if min(size) < 64:
        raise PipelineError(f"frame size {size[0]}x{size[1]} is too small: use 64 px or more")
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise PipelineError(f"unknown fake methods {sorted(unknown)}: use {', '.join(METHODS)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"{out_dir} is a file: give a folder for the sample dataset")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise PipelineError(f"{out_dir} is not empty and is not a sample dataset: "
                            "choose a new or empty folder")


def _free_name(root: Path, stem: str) -> str:
    """``stem.mp4``, or ``stem-2.mp4``... when that name is taken (repeated self-blends)."""
    candidate, n = f"{stem}.mp4", 1
    while (root / candidate).exists():
        n += 1
        candidate = f"{stem}-{n}.mp4"
    return candidate


def _write_labels(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "group"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished dataset into place, replacing an earlier sample (never user data:
    _check_arguments refused a non-empty folder without the sample marker)."""
    if out_dir.is_dir():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dfpipe.sample.dataset",
        description="Write a small offline sample dataset (real videos of stock face photos "
                    "and blending fakes of them) laid out as dataset/{real,fake}/*.mp4 with "
                    "labels.csv. " + NOTE,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create (an earlier sample is replaced)")
    parser.add_argument("--sources", type=int, default=DEFAULT_SOURCES,
                        help="number of real source videos (= groups)")
    parser.add_argument("--fakes-per-source", type=int, default=DEFAULT_FAKES_PER_SOURCE,
                        help="fake videos made from each source")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="length of each video")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second")
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE[0], help="frame width")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE[1], help="frame height")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="fake methods, used in turn (a swap falls back to self_blend "
                             "when no frontal face of another person is available)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    args = parser.parse_args(argv)
    summary = make_sample_dataset(args.out, n_sources=args.sources,
                                  fakes_per_source=args.fakes_per_source, seconds=args.seconds,
                                  size=(args.width, args.height), fps=args.fps, seed=args.seed,
                                  methods=tuple(args.methods))
    print(f"wrote {summary['real']} real + {summary['fake']} fake videos "
          f"({summary['groups']} groups, {summary['frames_per_video']} frames each, "
          f"{summary['methods']}) to {summary['out_dir']} in {summary['seconds']} s")
    print(NOTE)
    return 0


if __name__ == "__main__":
    run_cli(main)

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

import cv2
import numpy as np
from tqdm import tqdm

from dfpipe.core.errors import PipelineError, run_cli
from dfpipe.sample.forging import Face, face_swap, locate_face, self_blend

log = logging.getLogger(__name__)

DEFAULT_SOURCES = 36
DEFAULT_FAKES_PER_SOURCE = 1
DEFAULT_SECONDS = 2.0
DEFAULT_FPS = 10.0
DEFAULT_SIZE = (320, 240)
METHODS: tuple[str, ...] = ("self_blend", "face_swap")
FOURCC = "mp4v"  # OpenCV's wheels carry no H.264 encoder
MARKER = "sample.json"
NOTE = ("Synthetic sample built from three stock photographs: it only proves that the pipeline "
        "runs. Real results need a real dataset (e.g. FaceForensics++, DFDC, Celeb-DF).")


def face_photos() -> list[tuple[str, np.ndarray]]:
    """Real face photographs shipped with installed packages, as (name, RGB uint8)."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as img:
        hopper = np.asarray(img.convert("RGB"))
    camera = np.repeat(skimage.data.camera()[..., None], 3, axis=2)
    return [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[..., :3])),
            ("grace_hopper", np.ascontiguousarray(hopper)),
            ("camera", np.ascontiguousarray(camera))]


@dataclass(frozen=True)
class Shot:
    """How one source video films its photograph: framing, motion, light, noise, codec.

    Positions are fractions of the frame, times in seconds, angles in degrees, noise in
    grey levels. A real video and the fakes made from it share one shot.
    """

    scale: float
    anchor: tuple[float, float]
    drift: tuple[float, float]
    drift_hz: float
    drift_phase: tuple[float, float]
    velocity: tuple[float, float]
    zoom: float
    zoom_hz: float
    roll: float
    roll_hz: float
    gain: float
    flicker: float
    flicker_hz: float
    gamma: float
    tint: tuple[float, float, float]
    side_light: float
    side_angle: float
    blur: float
    noise: float
    jpeg_quality: tuple[int, int]
    seed: int


def draw_shot(rng: np.random.Generator, face: Face, photo_shape: tuple[int, ...],
              size: tuple[int, int]) -> Shot:
    """Random framing and conditions; the face fills 28-50% of the frame height where the
    photo is large enough (never upscaled beyond that); the view never leaves the photo."""
    width, height = size
    min_scale = 1.08 * max(width / photo_shape[1], height / photo_shape[0])
    scale = height * rng.uniform(0.28, 0.5) / face.height
    scale = max(min(scale, 1.0), min_scale)

    def pair(lo: float, hi: float) -> tuple[float, float]:
        return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))

    quality = int(rng.integers(55, 86))
    return Shot(
        scale=float(scale),
        anchor=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.38, 0.55))),
        drift=(float(rng.uniform(0.0, 0.1)), float(rng.uniform(0.0, 0.06))),
        drift_hz=float(rng.uniform(0.1, 0.35)),
        drift_phase=pair(0.0, 2 * np.pi),
        velocity=pair(-0.03, 0.03),
        zoom=float(rng.uniform(0.0, 0.08)),
        zoom_hz=float(rng.uniform(0.1, 0.3)),
        roll=float(rng.uniform(0.0, 5.0)),
        roll_hz=float(rng.uniform(0.1, 0.4)),
        gain=float(rng.uniform(0.7, 1.2)),
        flicker=float(rng.uniform(0.0, 0.15)),
        flicker_hz=float(rng.uniform(0.05, 0.3)),
        gamma=float(rng.uniform(0.8, 1.25)),
        tint=tuple(float(v) for v in rng.uniform(0.9, 1.1, size=3)),  # type: ignore[arg-type]
        side_light=float(rng.uniform(0.0, 0.25)),
        side_angle=float(rng.uniform(0.0, 2 * np.pi)),
        blur=float(rng.uniform(0.0, 0.7)) if rng.random() < 0.5 else 0.0,
        noise=float(rng.uniform(1.0, 6.0)),
        jpeg_quality=(quality, quality + 10),
        seed=int(rng.integers(2**31)),
    )


def render_frames(photo: np.ndarray, face: Face, shot: Shot, n_frames: int,
                  size: tuple[int, int], fps: float) -> list[np.ndarray]:
    """Film the photograph: one RGB uint8 frame per time step, deterministic for the shot."""
    width, height = size
    small = cv2.resize(photo, None, fx=shot.scale, fy=shot.scale, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    fx, fy = (c * shot.scale for c in face.center)
    xs, ys = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    frames = []
    for k in range(n_frames):
        t = k / fps
        wave = np.sin(2 * np.pi * shot.drift_hz * t + np.array(shot.drift_phase))
        px = (shot.anchor[0] + shot.drift[0] * wave[0] + shot.velocity[0] * t) * width
        py = (shot.anchor[1] + shot.drift[1] * wave[1] + shot.velocity[1] * t) * height
        zoom = 1.0 + shot.zoom * np.sin(2 * np.pi * shot.zoom_hz * t)
        angle = shot.roll * np.sin(2 * np.pi * shot.roll_hz * t + 1.0)
        half_w, half_h = width / (2 * zoom), height / (2 * zoom)
        cx = float(np.clip(fx + (width / 2 - px) / zoom, half_w, max(half_w, sw - half_w)))
        cy = float(np.clip(fy + (height / 2 - py) / zoom, half_h, max(half_h, sh - half_h)))
        matrix = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
        matrix[:, 2] += (width / 2 - cx, height / 2 - cy)
        view = cv2.warpAffine(small, matrix, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        frames.append(_expose(view, shot, t, k, xs, ys))
    return frames


def _expose(view: np.ndarray, shot: Shot, t: float, k: int, xs: np.ndarray,
            ys: np.ndarray) -> np.ndarray:
    """Light, focus, sensor noise and a JPEG round trip for one frame."""
    rng = np.random.default_rng([shot.seed, k])
    image = view.astype(np.float32) / 255.0
    if shot.blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=shot.blur)
    gain = shot.gain * (1.0 + shot.flicker * np.sin(2 * np.pi * shot.flicker_hz * t))
    angle = shot.side_angle + 0.2 * t
    side = 1.0 + shot.side_light * (xs * np.cos(angle) + ys * np.sin(angle))
    image = np.power(image, shot.gamma) * gain * side[..., None] * np.array(shot.tint, np.float32)
    image = image * 255.0 + rng.normal(0.0, shot.noise, size=image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    quality = int(rng.integers(shot.jpeg_quality[0], shot.jpeg_quality[1] + 1))
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write RGB frames as an MPEG-4 (mp4v) file, atomically."""
    path = Path(path)
    if not frames:
        raise PipelineError(f"no frames to write to {path}")
    height, width = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), float(fps),
                             (width, height))
    if not writer.isOpened():
        raise PipelineError(f"OpenCV cannot write {FOURCC} video to {tmp} "
                            "(check the folder is writable and OpenCV has FFmpeg)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def write_face_video(path: Path, photo: np.ndarray, n_frames: int = 30,
                     fps: float = DEFAULT_FPS, size: tuple[int, int] = DEFAULT_SIZE,
                     seed: int = 0, face: Face | None = None) -> Path:
    """A short video filming a face photograph (face found by MTCNN unless given)."""
    face = face or locate_face(photo)
    shot = draw_shot(np.random.default_rng(seed), face, photo.shape, size)
    return write_video(path, render_frames(photo, face, shot, n_frames, size, fps), fps)


def write_blank_video(path: Path, n_frames: int = 30, size: tuple[int, int] = DEFAULT_SIZE,
                      fps: float = DEFAULT_FPS, seed: int = 0) -> Path:
    """A video with no face in it: a drifting colour gradient under noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    colours = rng.uniform(40, 215, size=(2, 3))
    frames = []
    for k in range(n_frames):
        mix = (0.6 * xs + 0.4 * ys + 0.05 * k) % 1.0
        image = colours[0] * (1 - mix[..., None]) + colours[1] * mix[..., None]
        image += rng.normal(0.0, 8.0, size=image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return write_video(path, frames, fps)


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
        prog="python -m dfpipe.sample.camera",
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

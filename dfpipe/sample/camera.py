"""Filming a photograph: a moving, zooming, slightly rotating camera with drifting light,
sensor noise and MPEG-4 compression, so the sample's videos look like footage, and the stock
face photographs that installed packages ship."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfpipe.core.errors import PipelineError
from dfpipe.sample.forging import Face, locate_face

log = logging.getLogger(__name__)

DEFAULT_SIZE = (320, 240)
DEFAULT_FPS = 10.0
FOURCC = "mp4v"  # OpenCV's wheels carry no H.264 encoder


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



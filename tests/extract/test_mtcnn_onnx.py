"""MTCNN under ONNX Runtime: the numpy port finds the same faces as the mtcnn package, boxes
within 2 px, on the shared clips and a generated one, and never imports TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, needs_shared

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import fit_within
from dfpipe.extract.faces import Face, MTCNNDetector
from dfpipe.extract.mtcnn_onnx import (
    OnnxMTCNN,
    area_resize,
    crop_and_resize,
    nms,
    pyramid_scales,
)
from dfpipe.extract.video import iter_sampled_frames

BOX_TOLERANCE = 2.0


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dfpipe.extract.mtcnn_export import export_mtcnn

    return export_mtcnn(tmp_path_factory.mktemp("mtcnn"))


@pytest.fixture(scope="module")
def package() -> MTCNNDetector:
    return MTCNNDetector(min_confidence=0.0)


def frames_of(video: Path, count: int, max_side: int = 640) -> list[np.ndarray]:
    """``count`` frames spread over the clip, RGB, no larger than ``max_side`` (as preprocess
    detects them)."""
    return [fit_within(frame, max_side) for _, frame in iter_sampled_frames(video, frames=count)]


def assert_same_faces(ours: list[Face], theirs: list[Face]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(sorted(ours, key=lambda f: f.box), sorted(theirs, key=lambda f: f.box),
                    strict=True):
        assert np.abs(np.subtract(a.box, b.box)).max() <= BOX_TOLERANCE, (a.box, b.box)
        assert abs(a.confidence - b.confidence) < 1e-3
        assert np.abs(np.subtract(a.landmarks, b.landmarks)).max() <= BOX_TOLERANCE


@pytest.mark.shared
@needs_shared
def test_same_faces_as_the_package_on_the_shared_clips(onnx_dir: Path,
                                                       package: MTCNNDetector) -> None:
    ours = OnnxMTCNN(onnx_dir, min_confidence=0.0)
    videos = sorted((SHARED_DATA / "videos").glob("*/*.mp4"))
    assert len(videos) >= 10
    found = 0
    for video in videos:
        for frame in frames_of(video, 2):
            theirs = package.detect([frame])[0]
            assert_same_faces(ours.detect([frame])[0], theirs)
            found += len(theirs)
    assert found >= len(videos)


def test_same_faces_as_the_package_on_a_generated_clip(tmp_path: Path, onnx_dir: Path,
                                                       package: MTCNNDetector) -> None:
    from app_support import face_video

    frames = frames_of(face_video(tmp_path / "face.mp4", n_frames=4, size=(320, 240)), 3)
    ours = OnnxMTCNN(onnx_dir, min_confidence=0.0).detect(frames)
    theirs = package.detect(frames)
    assert sum(map(len, theirs)) >= 3
    for a, b in zip(ours, theirs, strict=True):
        assert_same_faces(a, b)


def test_min_confidence_filters_like_the_package_detector(onnx_dir: Path) -> None:
    from app_support import face_video

    frame = frames_of(face_video(Path(onnx_dir) / "c.mp4", n_frames=2, size=(320, 240)), 1)[0]
    faces = OnnxMTCNN(onnx_dir, min_confidence=0.0).detect([frame])[0]
    best = max(f.confidence for f in faces)
    assert OnnxMTCNN(onnx_dir, min_confidence=min(1.0, best + 1e-6)).detect([frame]) == [[]]


def test_area_resize_and_crop_and_resize_equal_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    image = np.random.default_rng(0).uniform(-1, 1, (37, 53, 3)).astype(np.float32)
    for out_h, out_w in ((26, 37), (11, 17), (37, 53), (5, 9)):
        want = tf.image.resize(image[None], (out_h, out_w), method="area").numpy()[0]
        np.testing.assert_allclose(area_resize(image, out_h, out_w), want, atol=1e-5)
    boxes = np.array([[3.2, 4.7, 30.1, 29.9], [-5.0, -3.0, 20.0, 22.0], [40.0, 20.0, 60.0, 45.0]])
    norm = boxes[:, [1, 0, 3, 2]] / np.array([37, 53, 37, 53])
    want = tf.image.crop_and_resize(image[None], norm, np.zeros(3, np.int32), (24, 24)).numpy()
    np.testing.assert_allclose(crop_and_resize(image, boxes, 24), want, atol=1e-5)


def test_nms_drops_a_box_overlapped_by_any_better_one_even_a_dropped_one() -> None:
    rows = np.array([[0, 0, 0, 10, 10, 0.9],    # kept
                     [0, 3, 0, 13, 10, 0.8],    # overlaps the first: dropped
                     [0, 7, 0, 17, 10, 0.7],    # overlaps only the dropped second: dropped too
                     [0, 50, 50, 60, 60, 0.6]])
    kept = nms(rows, 0.3, "union", sort=True)
    assert kept[:, 5].tolist() == [0.9, 0.6]
    assert nms(rows, 0.99, "min", sort=True).shape == (4, 6)


def test_pyramid_is_the_packages() -> None:
    from mtcnn.utils.images import build_scale_pyramid

    for w, h, min_face in ((640, 360, 20), (360, 640, 40), (1920, 1080, 20), (50, 40, 12)):
        np.testing.assert_allclose(pyramid_scales(w, h, min_face, 0.709),
                                   build_scale_pyramid(w, h, min_face, 0.709))


def test_missing_export_says_how_to_write_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"no exported MTCNN in .*export.py --detector mtcnn"):
        OnnxMTCNN(tmp_path)


def test_onnx_mtcnn_never_imports_tensorflow(onnx_dir: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from dfpipe.extract.mtcnn_onnx import OnnxMTCNN
        OnnxMTCNN({str(onnx_dir)!r}).detect([np.zeros((120, 160, 3), np.uint8)])
        print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in
                               ("tensorflow", "keras", "mtcnn"))[:5])
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "loaded: []"


def test_export_script_writes_the_three_networks(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(REPO / "export.py"), "--detector", "mtcnn",
                          "--output", str(tmp_path / "mt")], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == ("exported MTCNN (P-Net, R-Net, O-Net) as ONNX to "
                                  f"{tmp_path / 'mt'}")
    assert sorted(p.name for p in (tmp_path / "mt").iterdir()) == [
        "mtcnn.json", "onet.onnx", "pnet.onnx", "rnet.onnx"]

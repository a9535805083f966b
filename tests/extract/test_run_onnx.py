"""preprocess.py --mtcnn-onnx: MTCNN from its ONNX export finds the package's faces, with
TensorFlow unimportable, in one process and in worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA, needs_shared

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import read_manifests
from dfpipe.extract.run import Settings, run

BLOCK_TF = ("import runpy, sys\n"
            "for name in ('tensorflow', 'keras', 'tf_keras', 'mtcnn', 'retinaface'):\n"
            "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
            "sys.argv = ['preprocess.py'] + sys.argv[1:]\n"
            "runpy.run_path('preprocess.py', run_name='__main__')\n")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dfpipe.extract.mtcnn_export import export_mtcnn

    return export_mtcnn(tmp_path_factory.mktemp("mtcnn"))


def boxes(out: Path) -> dict[str, list[list[float]]]:
    return {rec["relpath"]: [crop["box"] for crop in rec["crops"]]
            for rec in read_manifests(out)}


def videos(root: Path) -> None:
    """A real/ and a fake/ file: enough for the run to reach its detector check."""
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        (root / label / f"{label}.mp4").write_bytes(b"never read: the run stops before")


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_onnx_mtcnn_preprocess_matches_the_package_without_tensorflow(
        tmp_path: Path, onnx_dir: Path, workers: int) -> None:
    data = tmp_path / "data"
    for rel in ("real/519.mp4", "fake/519_515.mp4"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).symlink_to(SHARED_DATA / "videos" / rel)
    run(data, tmp_path / "package", Settings(detector="mtcnn", frames=3))
    cmd = [sys.executable, "-c", BLOCK_TF, "--input", str(data), "--output",
           str(tmp_path / "onnx"), "--detector", "mtcnn", "--frames", "3",
           "--mtcnn-onnx", str(onnx_dir), "--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    want, got = boxes(tmp_path / "package"), boxes(tmp_path / "onnx")
    assert set(got) == set(want) == {"real/519.mp4", "fake/519_515.mp4"}
    for video, expected in want.items():
        assert len(got[video]) == len(expected) == 3
        for ours, theirs in zip(got[video], expected, strict=True):
            assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 2, video


def test_mtcnn_onnx_with_another_detector_is_refused_in_one_line(tmp_path: Path,
                                                                  onnx_dir: Path) -> None:
    videos(tmp_path / "in")
    with pytest.raises(PipelineError, match="--mtcnn-onnx runs MTCNN only, not retinaface"):
        run(tmp_path / "in", tmp_path / "out", Settings(detector="retinaface"),
            mtcnn_onnx=onnx_dir)


def test_a_missing_export_is_named_before_any_video_is_read(tmp_path: Path) -> None:
    videos(tmp_path / "in")
    with pytest.raises(PipelineError, match="no exported MTCNN in .*export.py --detector mtcnn"):
        run(tmp_path / "in", tmp_path / "out", Settings(detector="mtcnn"),
            mtcnn_onnx=tmp_path / "nowhere")

"""The built-in sample dataset: layout, labels, determinism, decodable videos that MTCNN can
read, and fakes that differ from their source only around the face."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.sample import camera
from dfpipe.sample import dataset as sample
from dfpipe.sample import forging as fakes

SIZE = (320, 240)
FPS = 10.0
FRAMES = 6
SOURCES = 4  # astronaut, grace_hopper, camera, astronaut mirrored


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def detect(frames: list[np.ndarray]) -> list[list[dict]]:
    found = fakes.mtcnn_detector().detect_faces(frames, box_format="xyxy")
    return [[d for d in faces if d["confidence"] >= 0.9] for faces in found]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample") / "dataset"
    summary = sample.make_sample_dataset(root, n_sources=SOURCES, seconds=FRAMES / FPS,
                                         size=SIZE, fps=FPS, seed=3)
    return root, summary


def labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_face_photos_are_real_faces_found_by_mtcnn() -> None:
    photos = camera.face_photos()
    assert [name for name, _ in photos] == ["astronaut", "grace_hopper", "camera"]
    for _, image in photos:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        face = fakes.locate_face(image)
        assert face.width > 40 and face.height > 40
    assert [fakes.locate_face(img).frontal for _, img in photos] == [True, True, False]


def test_layout_labels_and_group_names(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    rows = labels(root)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
    assert sorted(r["path"] for r in rows) == files
    assert not [p for p in root.rglob("*") if p.name.startswith(".")], "temporary files left"
    real = [r for r in rows if r["label"] == "real"]
    fake = [r for r in rows if r["label"] == "fake"]
    assert [r["path"] for r in real] == [f"real/{i:03d}.mp4" for i in range(SOURCES)]
    assert all(r["group"] == Path(r["path"]).stem for r in real)
    assert len(fake) == SOURCES and summary["fake"] == SOURCES
    for row in fake:
        match = re.fullmatch(r"fake/(\d{3})_(\d{3})(-\d+)?\.mp4", row["path"])
        assert match, row["path"]
        assert row["group"] == match.group(1), "a fake's group is its target source"
    meta = json.loads((root / "sample.json").read_text())
    photo_of = {s["name"]: s["photo"] for s in meta["source_videos"]}
    donors = [re.fullmatch(r"fake/(\d{3})_(\d{3})\.mp4", r["path"]).groups() for r in fake]
    swaps = [(t, s) for t, s in donors if t != s]
    assert swaps and all(photo_of[t] != photo_of[s] for t, s in swaps), "swap of two people"
    assert meta["methods"] == {"self_blend": SOURCES - len(swaps), "face_swap": len(swaps)}
    assert "only proves that the pipeline runs" in meta["note"]


def test_videos_decode_to_expected_frames_and_size(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for row in labels(root):
        cap = cv2.VideoCapture(str(root / row["path"]))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
        cap.release()
        frames = read_frames(root / row["path"])
        assert len(frames) == FRAMES, row["path"]
        assert frames[0].shape == (SIZE[1], SIZE[0], 3)


def test_same_seed_same_frames_other_seed_other_frames(dataset: tuple[Path, dict],
                                                       tmp_path: Path) -> None:
    root, _ = dataset
    again = tmp_path / "again"
    sample.make_sample_dataset(again, n_sources=SOURCES, seconds=FRAMES / FPS, size=SIZE,
                               fps=FPS, seed=3)
    assert labels(again) == labels(root)
    for row in labels(root):
        a, b = read_frames(root / row["path"]), read_frames(again / row["path"])
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), row["path"]
    name, photo = camera.face_photos()[0]
    one = camera.write_face_video(tmp_path / "a.mp4", photo, n_frames=3, seed=5)
    two = camera.write_face_video(tmp_path / "b.mp4", photo, n_frames=3, seed=6)
    assert not np.array_equal(read_frames(one)[0], read_frames(two)[0])


def test_mtcnn_finds_the_face_in_real_and_fake_frames(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for row in labels(root)[::2]:  # every other video: fakes and reals of all three photos
        frames = read_frames(root / row["path"])[::2]
        found = detect(frames)
        assert all(len(faces) == 1 for faces in found), (row["path"], found)


def test_fake_differs_from_its_source_only_around_the_face(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    for row in labels(root):
        if row["label"] != "fake":
            continue
        real = read_frames(root / "real" / f"{row['group']}.mp4")
        fake = read_frames(root / row["path"])
        boxes = detect(real)
        for frame_real, frame_fake, faces in zip(real, fake, boxes, strict=True):
            x1, y1, x2, y2 = faces[0]["box"]
            cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 0.8 * max(x2 - x1, y2 - y1)
            near = np.zeros(frame_real.shape[:2], bool)
            near[max(0, int(cy - half)):int(cy + half), max(0, int(cx - half)):int(cx + half)] = 1
            diff = np.abs(frame_real.astype(int) - frame_fake.astype(int)).sum(axis=2)
            # the box is about a fifth of the frame; MPEG-4 rate control spreads a little
            assert diff[near].sum() / diff.sum() > 0.8, row["path"]
            assert diff[near].mean() > 3.0, f"{row['path']}: fake barely changes the face"


def test_manipulations_only_touch_the_masked_face() -> None:
    photos = [image for _, image in camera.face_photos()]
    faces = [fakes.locate_face(image) for image in photos]
    rng = np.random.default_rng(0)
    sbi, mask = fakes.self_blend(photos[0], faces[0], rng, generated_width=40)
    swap, swap_mask = fakes.face_swap(photos[0], faces[0], photos[1], faces[1], rng, 40)
    for fake, m in ((sbi, mask), (swap, swap_mask)):
        assert np.array_equal(fake[m == 0], photos[0][m == 0])
        inside = np.abs(fake.astype(int) - photos[0].astype(int))[m > 0.9]
        assert inside.mean() > 5.0
        cx, cy = (round(v) for v in faces[0].center)
        assert m[cy, cx] == pytest.approx(1.0) and m[0, 0] == 0.0


def test_reinhard_transfer_matches_colour_statistics_inside_mask() -> None:
    rng = np.random.default_rng(1)
    src = rng.integers(100, 200, size=(32, 32, 3)).astype(np.uint8)
    ref = rng.integers(0, 80, size=(32, 32, 3)).astype(np.uint8)
    mask = np.ones((32, 32), np.float32)
    out = fakes.reinhard_transfer(src, ref, mask)
    assert np.abs(out.mean((0, 1)) - ref.mean((0, 1))).max() < 6
    half = fakes.reinhard_transfer(src, ref, mask, strength=0.5)
    assert ref.mean() < half.mean() < src.mean()


def test_blank_video_has_no_face(tmp_path: Path) -> None:
    path = camera.write_blank_video(tmp_path / "blank.mp4", n_frames=4, size=SIZE)
    frames = read_frames(path)
    assert len(frames) == 4
    assert detect(frames) == [[], [], [], []]


def test_refuses_a_folder_of_user_data_and_replaces_an_earlier_sample(
        dataset: tuple[Path, dict], tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "video.mp4").write_bytes(b"keep me")
    with pytest.raises(PipelineError, match="not a sample dataset"):
        sample.make_sample_dataset(user, n_sources=1, seconds=0.1, size=SIZE)
    assert (user / "video.mp4").read_bytes() == b"keep me"
    earlier = tmp_path / "earlier"
    sample.make_sample_dataset(earlier, n_sources=2, seconds=0.1, size=SIZE)
    summary = sample.make_sample_dataset(earlier, n_sources=1, seconds=0.1, size=SIZE)
    assert summary["videos"] == 2
    assert sorted(r["path"] for r in labels(earlier)) == ["fake/000_000.mp4", "real/000.mp4"]
    assert not list(tmp_path.glob(".*")), "temporary folders left"
    with pytest.raises(PipelineError, match="at least 1"):
        sample.make_sample_dataset(tmp_path / "none", n_sources=0)


def test_cli_help_lists_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sample.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"default: {sample.DEFAULT_SOURCES}" in text and "real dataset" in text

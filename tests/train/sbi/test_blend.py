"""Self-blended images: the blend itself, the training pipeline and train.py --sbi."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO
from split_support import write_split

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb
from dfpipe.core.splittable import load_split
from dfpipe.train.sbi import blend as sbi
from dfpipe.train.sbi import grid
from dfpipe.train.sbi.inputs import make_sbi_dataset, plan, read_sbi_train, settings
from dfpipe.train.sbi.landmarks import DEFAULT_LAYOUT, LandmarkReport, Landmarks

SIDE = 128
FIVE = DEFAULT_LAYOUT * SIDE


def face_like(seed: int = 0, side: int = SIDE) -> np.ndarray:
    """A textured RGB image (noise over a smooth gradient) to blend."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:side, 0:side] / side
    base = np.stack([120 + 80 * xs, 100 + 60 * ys, 90 + 40 * xs * ys], axis=2)
    return np.clip(base + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)


def test_blended_pixels_are_convex_mixes_of_source_and_target() -> None:
    image = face_like()
    for seed in range(12):
        made = sbi.self_blend(image, FIVE, np.random.default_rng(seed))
        m = made.mask[..., None].astype(np.float64)
        s, t = made.source.astype(np.float64), made.target.astype(np.float64)
        expected = m * s + (1 - m) * t
        assert np.abs(made.blended - expected).max() <= 0.5 + 1e-3
        lo, hi = np.minimum(s, t), np.maximum(s, t)
        assert ((made.blended >= np.floor(lo)) & (made.blended <= np.ceil(hi))).all()
        assert np.array_equal(made.blended[made.mask == 0], made.target[made.mask == 0])
        assert made.transformed in ("source", "target")
        unchanged = made.target if made.transformed == "source" else made.source
        if made.transformed == "source":
            assert np.array_equal(unchanged, image), "the target is the input image"


def test_mask_is_in_bounds_inside_the_image_and_covers_the_inner_face() -> None:
    image = face_like()
    ratios = set()
    for seed in range(30):
        made = sbi.self_blend(image, FIVE, np.random.default_rng(seed))
        mask = made.mask
        assert mask.shape == image.shape[:2] and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= made.ratio + 1e-6 <= 1.0 + 1e-6
        assert mask.max() == pytest.approx(made.ratio, abs=1e-4)
        ratios.add(made.ratio)
        at_points = np.array([mask[int(y), int(x)] for x, y in FIVE]) / made.ratio
        assert at_points.min() > 0.4 and at_points.mean() > 0.7, "eyes, nose, mouth blended"
        nose = FIVE[2].astype(int)
        assert mask[nose[1], nose[0]] == pytest.approx(made.ratio, abs=1e-4)
        assert mask[:3, :].max() == 0.0, "nothing blended along the top edge (forehead hair)"
    assert ratios <= set(sbi.BLEND_RATIOS) and len(ratios) >= 3


def test_mask_of_a_small_face_stays_near_it() -> None:
    image = face_like(side=400)
    five = FIVE * 0.5 + 20  # a 64 px face near the top-left corner of a 400 px photo
    outline = sbi.inner_face_outline(five)
    lo, hi = outline.min(0), outline.max(0)
    for seed in range(10):  # blur and deformation scale with the face, not the photo
        made = sbi.self_blend(image, five, np.random.default_rng(seed))
        ys, xs = np.nonzero(made.mask)
        beyond = max(xs.max() - hi[0], ys.max() - hi[1], lo[0] - xs.min(), lo[1] - ys.min())
        assert beyond < 0.1 * (hi - lo).max()
        assert np.array_equal(made.blended[200:, 200:], made.target[200:, 200:])


def test_same_seed_same_blend_other_seed_other_blend() -> None:
    image = face_like()
    a = sbi.self_blend(image, FIVE, np.random.default_rng(5))
    b = sbi.self_blend(image, FIVE, np.random.default_rng(5))
    c = sbi.self_blend(image, FIVE, np.random.default_rng(6))
    assert np.array_equal(a.blended, b.blended) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.blended, c.blended)


def test_five_points_span_the_mean_face_outline_and_follow_the_face() -> None:
    outline = sbi.inner_face_outline(sbi.MEAN_FIVE * 100)
    np.testing.assert_allclose(outline, sbi.MEAN_OUTLINE * 100, atol=1.0)
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = sbi.inner_face_outline(FIVE @ rot.T * 1.5 + 30)
    np.testing.assert_allclose(moved, sbi.inner_face_outline(FIVE) @ rot.T * 1.5 + 30,
                               atol=1e-6)
    hull = np.zeros((SIDE, SIDE), np.float32)
    outline = np.round(sbi.inner_face_outline(FIVE)).astype(np.int32)
    cv2.fillConvexPoly(hull, cv2.convexHull(outline), 1.0)
    mouth_y = FIVE[3:, 1].mean()
    eye_dist = FIVE[1, 0] - FIVE[0, 0]
    assert hull[int(mouth_y + 0.4 * eye_dist), SIDE // 2] == 1.0, "chin below the mouth"
    assert hull[int(FIVE[2, 1]), int(FIVE[0, 0] - 0.3 * eye_dist)] == 1.0, "cheek"
    swapped = FIVE[[1, 0, 2, 4, 3]]
    np.testing.assert_allclose(sbi.order_five(swapped), FIVE)


def test_bad_image_is_refused() -> None:
    with pytest.raises(PipelineError, match="RGB uint8"):
        sbi.self_blend(np.zeros((8, 8), np.uint8), FIVE, np.random.default_rng(0))


# ------------------------------------------------------------------- training pipeline

def add_landmarks(root: Path, size: int = 72) -> None:
    """Give every row of a test split's table the default keypoints, as preprocess would."""
    table = root / "split.csv"
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    points = json.dumps((DEFAULT_LAYOUT * size).round(1).tolist())
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "landmarks"])
        writer.writeheader()
        writer.writerows({**r, "landmarks": points} for r in rows)


def real_only_split(root: Path) -> Path:
    write_split(root, {"train": {"real": 4}, "val": {"real": 2, "fake": 2}})
    add_landmarks(root)
    return root


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)[:, 0]


def _landmarks(crops) -> Landmarks:
    points = np.stack([np.array(c.landmarks or FIVE * 72 / SIDE, np.float32) for c in crops])
    return Landmarks(points, np.zeros(len(crops), bool))


def test_pairs_are_real_then_fake_in_one_batch_and_differ_only_inside_the_face(
        tmp_path: Path) -> None:
    root = real_only_split(tmp_path / "split")
    crops = read_sbi_train(root, 1.0)
    assert {c.label for c in crops} == {0}
    p = plan(crops, 1.0, batch_size=4)
    ds = make_sbi_dataset(crops, _landmarks(crops), p, size=72, seed=1, augment=True)
    batches = [(x.numpy(), y.numpy()[:, 0]) for x, y in ds]
    assert all(len(b) % 2 == 0 and (b[0::2] == 0).all() and (b[1::2] == 1).all()
               for _, b in batches)
    x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    assert len(y) == 2 * len(crops) and y.sum() == len(crops)
    top = np.abs(x[0::2] - x[1::2])[:, :3].mean(axis=(1, 2, 3))
    assert (top < 3).all(), "a pair shares its augmentation draw: top rows (no face) agree"
    plain, _ = _epoch(make_sbi_dataset(crops, _landmarks(crops), p, 72, seed=1, augment=False))
    originals = [read_rgb(c.path).astype(np.float32) for c in crops]
    untouched = sum(any(np.array_equal(real, o) for o in originals) for real in plain[0::2])
    assert untouched >= 1, "with the transform on the source, the pair's real is the crop"
    for real, fake in zip(plain[0::2], plain[1::2], strict=True):
        diff = np.abs(real - fake).sum(axis=2)
        assert diff[:3].max() == 0 and diff[:, :2].max() == 0, "outside the face untouched"
        assert diff[20:50, 20:50].mean() > 1.0, "the face is blended"
    x2, _ = _epoch(ds)
    assert not np.array_equal(x, x2), "fresh blends every epoch"
    again, _ = _epoch(make_sbi_dataset(crops, _landmarks(crops), p, 72, seed=1, augment=True))
    np.testing.assert_array_equal(x, again)


def test_mixed_ratio_adds_the_splits_fakes_and_never_validation(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 4, "fake": 5},
                                            "val": {"real": 2, "fake": 2}})
    crops = read_sbi_train(root, 0.5)
    p = plan(crops, 0.5, batch_size=4)
    assert (p.real, p.self_blended, p.split_fakes_per_epoch) == (8, 8, 8)
    assert p.labels().count(1) == 16 and p.labels().count(0) == 8
    ds = make_sbi_dataset(crops, _landmarks(crops), p, size=72, seed=0, augment=False)
    x, y = _epoch(ds)
    assert (int((y == 0).sum()), int((y == 1).sum())) == (8, 16)
    train_fakes = {read_rgb(c.path).tobytes() for c in crops if c.label == 1}
    val = {read_rgb(c.path).tobytes() for c in load_split(root, "val")}
    seen = {img.astype(np.uint8).tobytes() for img in x}
    assert len(seen & train_fakes) >= 6 and not seen & val
    assert plan(crops, 1.0, 4).split_fakes_per_epoch == 0
    meta = settings(p, LandmarkReport(crops=8, from_table=8))
    assert meta["ratio"] == 0.5 and meta["split_fakes_per_epoch"] == 8
    assert meta["landmarks"]["from_table"] == 8


def test_mixing_needs_fakes_and_real_crops_are_required(tmp_path: Path) -> None:
    root = real_only_split(tmp_path / "split")
    with pytest.raises(PipelineError, match="--sbi-ratio 1"):
        read_sbi_train(root, 0.5)
    with pytest.raises(PipelineError, match=r"\(0, 1\]"):
        read_sbi_train(root, 0.0)
    fakes = write_split(tmp_path / "fakes", {"train": {"fake": 2}, "val": {"real": 1}})
    with pytest.raises(PipelineError, match="no real crops"):
        read_sbi_train(fakes, 1.0)
    with pytest.raises(PipelineError, match="at least 2"):
        plan(load_split(root, "train"), 1.0, 1)


def _digest(paths) -> str:
    h = hashlib.sha1()
    for p in sorted(map(str, paths)):
        h.update(Path(p).read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_train_sbi_end_to_end_on_real_crops_only(tmp_path: Path) -> None:
    from dfpipe.models.saving import load_classifier
    from dfpipe.train.config import TrainConfig
    from dfpipe.train.loop import train

    root = real_only_split(tmp_path / "split")
    val = load_split(root, "val")
    before = _digest(c.path for c in val)
    out = tmp_path / "models"
    result = train(TrainConfig(data=root, output=out, backbone="tiny", weights="none",
                               size=64, batch_size=4, epochs=1, sbi=True), verbose=0)
    meta = result.metadata
    blending = meta["self_blending"]
    assert blending["ratio"] == 1.0 and blending["self_blended_per_epoch"] == 8
    assert blending["split_fakes_per_epoch"] == 0 and blending["landmarks"]["from_table"] == 8
    assert meta["config"]["sbi"] is True and meta["split"]["train"]["fake"] == 0
    assert meta["split"]["val"] == {"crops": 8, "videos": 4, "groups": 4, "real": 4, "fake": 4}
    assert [str(p) for p in result.val_paths] == [str(c.path) for c in val]
    assert _digest(c.path for c in val) == before, "validation crops untouched"
    model, _ = load_classifier(result.model_path)
    crops = np.stack([read_rgb(p) for p in result.val_paths]).astype("float32")
    np.testing.assert_allclose(model.predict(crops, verbose=0)[:, 0], result.val_scores,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(PipelineError, match="--sbi-ratio 1"):
        train(TrainConfig(data=root, output=tmp_path / "m2", backbone="tiny", weights="none",
                          size=64, batch_size=4, epochs=1, sbi=True, sbi_ratio=0.5), verbose=0)


def test_grid_command_writes_a_png_of_real_mask_and_blend(tmp_path: Path) -> None:
    root = real_only_split(tmp_path / "split")
    png = tmp_path / "grid.png"
    assert grid.main(["--grid", str(png), "--data", str(root), "--rows", "3",
                     "--side", "64"]) == 0
    picture = cv2.imread(str(png))
    assert picture.shape == (3 * 64, 4 * 64, 3)
    mask_tiles = picture[:, 2 * 64:3 * 64]
    assert (mask_tiles[20:] > 60).mean() > 0.3 and (mask_tiles[20:] == 0).mean() > 0.05
    real, blended = picture[20:, :64].astype(int), picture[20:, 3 * 64:].astype(int)
    assert np.abs(real - blended).mean() > 2


def test_cli_passes_the_sbi_options_and_errors_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = real_only_split(tmp_path / "split")
    repo = REPO
    run = subprocess.run([sys.executable, str(repo / "train.py"), "--data", str(root),
                          "--output", str(tmp_path / "m"), "--backbone", "tiny", "--weights",
                          "none", "--size", "64", "--sbi", "--sbi-ratio", "0.5"],
                         capture_output=True, text=True, cwd=repo, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: --sbi-ratio 0.5 mixes in")


def test_sbi_val_never_reads_a_real_fake_and_says_which_validation_it_used(
        tmp_path: Path) -> None:
    from dfpipe.train.config import TrainConfig
    from dfpipe.train.loop import train

    root = real_only_split(tmp_path / "split")
    for crop in load_split(root, "val"):
        if crop.label == 1:
            crop.path.write_bytes(b"not an image: reading it would stop training")
    config = TrainConfig(data=root, output=tmp_path / "m", backbone="tiny", weights="none",
                         size=64, batch_size=4, epochs=1, sbi=True, sbi_val=True)
    meta = train(config, verbose=0).metadata
    assert meta["validation"]["kind"] == "self_blended"
    assert meta["validation"]["real_crops"] == meta["validation"]["self_blended_crops"] == 4
    assert meta["validation"]["split_fakes_left_out"] == 4
    assert meta["operating_point"]["val"]["videos"] == 4  # two reals and their two blends
    assert "self-blended validation" in meta["operating_point"]["val"]["measured_on"]
    with pytest.raises(PipelineError, match="cannot read image"):
        train(TrainConfig(data=root, output=tmp_path / "m2", backbone="tiny", weights="none",
                          size=64, batch_size=4, epochs=1, sbi=True), verbose=0)
    with pytest.raises(PipelineError, match="--sbi-val .* goes with --sbi"):
        train(TrainConfig(data=root, output=tmp_path / "m3", sbi_val=True), verbose=0)

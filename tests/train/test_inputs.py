"""tf.data pipeline: validation untouched, training augmented and seeded, classes balanced."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from split_support import write_split

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb
from dfpipe.core.splittable import Crop, load_split
from dfpipe.train import inputs as data
from dfpipe.train.inputs import (
    class_weights,
    draw_per_video,
    epoch_plan,
    feed_size,
    make_dataset,
    read_split,
    split_counts,
)


def _images(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_validation_batches_are_the_decoded_crops_untouched(tmp_path: Path, monkeypatch) -> None:
    root = write_split(tmp_path / "split")
    crops = read_split(root, "val")

    def no_augmentation(*args, **kwargs):
        raise AssertionError("augmentation reached validation data")

    monkeypatch.setattr(data, "build_augmenter", no_augmentation)
    x, y = _images(make_dataset(crops, 72, batch_size=3, training=False, augment=True))
    assert x.dtype == np.float32 and x.shape == (len(crops), 72, 72, 3)
    assert y.shape == (len(crops), 1)
    np.testing.assert_array_equal(y[:, 0], [c.label for c in crops])
    for image, crop in zip(x, crops, strict=True):
        np.testing.assert_array_equal(image, read_rgb(crop.path).astype(np.float32))


def test_training_batches_are_augmented_and_seeded(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split")
    crops = read_split(root, "train")
    decoded = {read_rgb(c.path).tobytes() for c in crops}

    def epoch(seed: int) -> np.ndarray:
        ds = make_dataset(crops, 72, batch_size=4, training=True, seed=seed, augment=True)
        return _images(ds)[0]

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert first.shape == (len(crops) // 4 * 4, 72, 72, 3)  # last partial batch dropped
    changed = [x.astype(np.uint8).tobytes() not in decoded for x in first]
    assert sum(changed) >= 0.75 * len(first)  # each transform draws on its own
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    plain = _images(make_dataset(crops, 72, batch_size=4, training=True, seed=3, augment=False))
    assert all(x.astype(np.uint8).tobytes() in decoded for x in plain[0])


def test_crops_of_another_size_are_resized_to_the_feed_size(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", size=50)
    crops = read_split(root, "val")
    x, _ = _images(make_dataset(crops, 64, batch_size=8, training=False))
    assert x.shape[1:] == (64, 64, 3)


def test_balanced_sampling_draws_both_classes_equally(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 8, "fake": 1}}, size=16,
                       frames=4)
    crops = load_split(root, "train")
    labels = np.concatenate([epoch_plan(crops, e, 0, None, "sampling").labels
                             for e in range(10)])
    assert len(labels) == 10 * 36
    assert 0.4 < labels.mean() < 0.6  # 1 fake in 9 crops without sampling
    ds = make_dataset(crops, 16, batch_size=6, training=True, augment=False, balance="sampling")
    assert sum(len(y) for _, y in ds) == 36


def _video_crops(lengths: dict[str, int]) -> list[Crop]:
    return [Crop(path=Path(f"/x/{v}/{f:06d}.jpg"), label=i % 2, video_id=v, group=v,
                 split="train", frame=f)
            for i, (v, n) in enumerate(lengths.items()) for f in range(n)]


def test_each_epoch_draws_at_most_n_crops_per_video_spread_over_time() -> None:
    crops = _video_crops({"long": 400, "short": 5, "mid": 40})
    plans = [epoch_plan(crops, epoch, seed=7, frames_per_video=8) for epoch in range(3)]
    for plan in plans:
        per_video = Counter(c.video_id for c in plan.crops)
        assert per_video == {"long": 8, "short": 5, "mid": 8}
        frames = sorted(c.frame for c in plan.crops if c.video_id == "long")
        assert [f // 50 for f in frames] == list(range(8))  # one from each eighth of the video
        assert len(plan.seeds) == len(plan.crops)
    drawn = [{(c.video_id, c.frame) for c in plan.crops} for plan in plans]
    assert drawn[0] != drawn[1] != drawn[2]  # redrawn every epoch
    again = epoch_plan(crops, 1, seed=7, frames_per_video=8)
    assert [c.path for c in again.crops] == [c.path for c in plans[1].crops]
    np.testing.assert_array_equal(again.seeds, plans[1].seeds)
    assert len(epoch_plan(crops, 0, seed=7, frames_per_video=0).crops) == 445  # 0: every crop


def test_validation_uses_one_fixed_draw(tmp_path: Path) -> None:
    crops = _video_crops({"long": 400, "short": 5})
    fixed = draw_per_video(crops, 8)
    assert fixed == draw_per_video(crops, 8)
    assert [c.frame for c in fixed if c.video_id == "long"] == [25 + 50 * i for i in range(8)]
    root = write_split(tmp_path / "split", {"val": {"real": 1, "fake": 1}}, size=16, frames=6)
    val = load_split(root, "val")
    x, y = _images(make_dataset(val, 16, batch_size=4, training=False, frames_per_video=2))
    assert len(x) == 4 and y[:, 0].tolist() == [1, 1, 0, 0]


def test_augmentation_follows_the_deepfakebench_recipe() -> None:
    steps = {type(t).__name__: t for t in data.build_augmenter().transforms}
    assert steps["HorizontalFlip"].p == 0.5
    jpeg = steps["ImageCompression"]
    assert (tuple(jpeg.quality_range), jpeg.p) == ((40, 100), 0.5)
    blur = steps["OneOf"]
    assert blur.p == 0.5
    assert {tuple(t.blur_limit) for t in blur.transforms} == {(3, 7)}
    colour = steps["RandomBrightnessContrast"]
    assert tuple(colour.brightness_limit) == (-0.1, 0.1)
    assert tuple(colour.contrast_limit) == (-0.1, 0.1)


def test_augmentation_strength_scales_the_recipe_and_is_named_or_a_number(
        tmp_path: Path) -> None:
    from dfpipe.train.config import TrainConfig, resolve

    light = {type(t).__name__: t for t in data.build_augmenter(0.5).transforms}
    assert light["HorizontalFlip"].p == 0.5  # the flip is free: kept whatever the strength
    assert light["OneOf"].p == 0.25 and light["RandomBrightnessContrast"].p == 0.25
    assert tuple(light["ImageCompression"].quality_range) == (70, 100)
    assert tuple(light["RandomBrightnessContrast"].brightness_limit) == (-0.05, 0.05)
    assert [data.augment_strength(v) for v in ("none", "light", "full", "0.3", True, False)] == [
        0.0, 0.5, 1.0, 0.3, 1.0, 0.0]
    with pytest.raises(PipelineError, match="--augment 'strong'"):
        data.augment_strength("strong")
    with pytest.raises(PipelineError, match="--augment '1.5'"):
        data.augment_strength("1.5")
    assert resolve(TrainConfig(backbone="tiny")).augment == 0.0  # the registry's: it underfits
    assert resolve(TrainConfig(backbone="xception")).augment == 1.0  # the published recipe
    assert resolve(TrainConfig(backbone="tiny", augment="light")).augment == 0.5
    root = write_split(tmp_path / "split", size=16)
    crops = read_split(root, "train")
    none = _images(make_dataset(crops, 16, batch_size=4, training=True, seed=3, augment="none"))
    plain = _images(make_dataset(crops, 16, batch_size=4, training=True, seed=3,
                                 augment=False))
    assert np.array_equal(none[0], plain[0])


def test_augmentations_draw_independently() -> None:
    aug = data.build_augmenter()
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    unchanged = 0
    for seed in range(50):
        data.seed_transforms(aug, seed)
        unchanged += np.array_equal(aug(image=image)["image"], image)
    assert unchanged <= 8  # ~4% expected; ~50% if the transforms shared one draw


def test_class_weights_equalise_the_classes() -> None:
    weights = class_weights([0, 0, 0, 1])
    assert weights[0] == pytest.approx(4 / 6) and weights[1] == pytest.approx(2.0)
    assert 3 * weights[0] == pytest.approx(1 * weights[1])


def test_missing_empty_or_one_class_split_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="split folder not found"):
        read_split(tmp_path / "absent", "train")
    root = write_split(tmp_path / "split", {"train": {"real": 2, "fake": 0},
                                            "val": {"real": 1, "fake": 1}})
    with pytest.raises(PipelineError, match="split 'train' .* has no fake crops") as err:
        read_split(root, "train")
    assert "\n" not in str(err.value)
    with pytest.raises(PipelineError, match="no crops in split 'test'"):
        read_split(root, "test")


def test_counts_and_feed_size(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", size=40, report=False)
    crops = read_split(root, "train")
    counts = split_counts(crops)
    got = (counts.crops, counts.videos, counts.groups, counts.real, counts.fake)
    assert got == (12, 6, 6, 6, 6)
    assert feed_size(crops, None) == 40
    assert feed_size(crops, {"size": 299}) == 299


def test_unknown_balance_mode(tmp_path: Path) -> None:
    crops = read_split(write_split(tmp_path / "split", size=16), "train")
    with pytest.raises(PipelineError, match="unknown balance mode 'oversample'"):
        make_dataset(crops, 16, 4, training=True, balance="oversample")


def test_two_workers_each_decode_only_their_share_of_the_files(tmp_path: Path,
                                                               monkeypatch) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 4, "fake": 4}}, size=16,
                       frames=3, report=False)
    crops = read_split(root, "train")
    decoded: dict[int, list[str]] = {0: [], 1: []}
    worker = {"index": 0}
    real_call = data.CropLoader.__call__

    def counting(self, path, seed):
        decoded[worker["index"]].append(path.decode())
        return real_call(self, path, seed)

    monkeypatch.setattr(data.CropLoader, "__call__", counting)
    for index in (0, 1):
        worker["index"] = index
        ds = make_dataset(crops, 16, 2, training=False, shard=(2, index))
        assert sum(len(y) for _, y in ds) == len(crops) // 2
    assert len(decoded[0]) == len(decoded[1]) == len(crops) // 2
    assert set(decoded[0]).isdisjoint(decoded[1])
    assert set(decoded[0]) | set(decoded[1]) == {str(c.path) for c in crops}

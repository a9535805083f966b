"""Training end to end on a tiny generated split, and the small decisions around it."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from split_support import write_split

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import METADATA_ATTR
from dfpipe.core.images import read_rgb
from dfpipe.models import registry as models
from dfpipe.models.build import backbone_of, build_backbone, build_classifier
from dfpipe.models.registry import (
    BACKBONES,
    IMAGENET_MEAN_RGB,
    IMAGENET_STDDEV_RGB,
    Backbone,
    get_backbone,
)
from dfpipe.models.saving import load_classifier, load_model, save_model
from dfpipe.scoring.operating import choose_threshold
from dfpipe.train import loop as training
from dfpipe.train.config import TrainConfig
from dfpipe.train.inputs import read_split
from dfpipe.train.loop import train

TINY_RUN = dict(backbone="tiny", weights="none", size=64, batch_size=4, epochs=1)


def test_one_epoch_writes_a_model_that_reloads_to_the_same_predictions(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split")
    out = tmp_path / "models"
    result = train(TrainConfig(data=root, output=out, **TINY_RUN), verbose=0)

    log = pd.read_csv(out / "training_log.csv")
    assert list(log["epoch"]) == [0]
    for column in ("loss", "auc", "val_loss", "val_auc", "lr"):
        assert math.isfinite(float(log[column].iloc[0])), column
    assert result.model_path == out / "tiny_best.h5"
    assert (out / "tiny_best.json").is_file() and (out / "training_curves.png").stat().st_size
    assert any((out / "tensorboard").rglob("events.out.tfevents*"))
    assert not (out / ".resume").exists()
    done = json.loads((out / "training_done.json").read_text())
    assert done["epochs"] == 1 and done["model"] == str(result.model_path) and done["finished"]

    model, meta = load_classifier(result.model_path)
    with h5py.File(result.model_path, "r") as fh:
        assert json.loads(fh.attrs[METADATA_ATTR]) == meta
    assert meta["class_names"] == ["real", "fake"]
    assert (meta["input_size"], meta["backbone"]) == (64, "tiny")
    assert meta["crop"]["margin"] == 1.3 and meta["crop"]["size"] == 72
    assert meta["split"]["train"] == {"crops": 12, "videos": 6, "groups": 6, "real": 6,
                                      "fake": 6}
    assert meta["config"]["weights"] == "none" and meta["config"]["epochs"] == 1
    assert 0.0 <= meta["threshold"] <= 1.0 and "validation" in meta["threshold_source"]
    # the operating point users meet: video-level, with the rule that will be deployed
    assert meta["aggregate"] == "mean" and meta["aggregate_source"] == "train.py --aggregate"
    assert "4 validation videos" in meta["threshold_source"]
    assert "8 validation crops" in meta["crop_threshold_source"]
    val = read_split(root, "val")
    per_video = pd.DataFrame({"v": [c.video_id for c in val], "y": [c.label for c in val],
                              "s": result.val_scores}).groupby("v").mean()
    assert meta["threshold"] == choose_threshold(per_video["y"], per_video["s"])
    assert meta["crop_threshold"] == choose_threshold([c.label for c in val], result.val_scores)
    assert meta["phase_boundary"] == 0  # --weights none: no head phase
    assert meta["quality"] is None  # this split report states no filter
    assert meta["training"]["precision"] == result.precision

    crops = np.stack([read_rgb(p) for p in result.val_paths]).astype("float32")
    again = model.predict(crops, verbose=0)[:, 0]
    np.testing.assert_allclose(again, result.val_scores, rtol=1e-5, atol=1e-6)


def test_weights_path_and_two_phases(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", size=64)
    weights = tmp_path / "tiny_backbone.weights.h5"
    build_backbone(get_backbone("tiny"), 64, None).save_weights(weights)
    out = tmp_path / "models"
    cfg = TrainConfig(data=root, output=out, backbone="tiny", weights=str(weights), size=64,
                      batch_size=4, head_epochs=1, epochs=1, lr=1e-3, fine_tune_lr=1e-4,
                      schedule="plateau", precision="float32", balance="sampling")
    result = train(cfg, verbose=0)
    log = pd.read_csv(out / "training_log.csv")
    assert list(log["epoch"]) == [0, 1]
    # each phase ran once, at its own rate: the head's, then fine-tuning's
    assert log["lr"].tolist() == pytest.approx([1e-3, 1e-4])
    phases = result.metadata["training"]["phases"]
    assert [(p["name"], p["first_epoch"], p["epochs_run"], p["lr"]) for p in phases] == [
        ("head", 0, 1, 1e-3), ("fine_tune", 1, 1, 1e-4)]
    assert result.metadata["phase_boundary"] == 1
    assert result.metadata["config"]["weights"] == str(weights)
    assert result.metadata["training"]["precision"] == "float32"
    assert result.epochs_run == 2


def test_fine_tuning_recipe_cosine_schedule_and_batch_norm(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 8, "fake": 8},
                                            "val": {"real": 2, "fake": 2}}, size=16)
    weights = tmp_path / "tiny_backbone.weights.h5"
    build_backbone(get_backbone("tiny"), 16, None).save_weights(weights)
    base = TrainConfig(data=root, backbone="tiny", weights=str(weights), size=16,
                       batch_size=16, head_epochs=1, epochs=3, lr=1e-3, fine_tune_lr=1e-3,
                       schedule="cosine", patience=10, precision="float32")
    result = train(replace(base, output=tmp_path / "trained"), verbose=0)
    log = pd.read_csv(tmp_path / "trained" / "training_log.csv")
    # head warm-up at its rate, then cosine decay over the 3 fine-tuning epochs (2 steps each)
    assert log["lr"].tolist() == pytest.approx([1e-3, 7.5e-4, 2.5e-4, 0.0], abs=1e-9)
    phases = result.metadata["training"]["phases"]
    assert [(p["name"], p["first_epoch"], p["epochs_run"]) for p in phases] == [
        ("head", 0, 1), ("fine_tune", 1, 3)]
    train_cfg = result.metadata["train_config"]
    assert train_cfg["optimizer"] == "AdamW" and train_cfg["batch_norm_trained"]
    assert list(result.metadata["model_config"]["mean"]) == [127.5] * 3

    def moving_mean(model_path: Path) -> np.ndarray:
        model, _ = load_classifier(model_path)
        return np.asarray(model.get_layer("tiny").get_layer("tiny_bn0").moving_mean)

    assert np.abs(moving_mean(result.model_path)).max() > 1e-3  # batch 16: batch norm trains
    frozen = train(replace(base, output=tmp_path / "frozen", freeze_bn=True), verbose=0)
    assert not frozen.metadata["train_config"]["batch_norm_trained"]
    np.testing.assert_array_equal(moving_mean(frozen.model_path), 0.0)


def test_frames_per_video_caps_training_and_fixes_validation(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 2, "fake": 2},
                                            "val": {"real": 1, "fake": 1}}, size=16, frames=5)
    cfg = TrainConfig(data=root, output=tmp_path / "m", **{**TINY_RUN, "size": 16},
                      frames_per_video=2)
    result = train(cfg, verbose=0)
    sampling = result.metadata["sampling"]
    assert (sampling["train_crops_per_epoch"], sampling["val_crops"]) == (8, 4)
    assert result.metadata["split"]["val"]["crops"] == 10
    assert [int(p.name[:6]) for p in result.val_paths] == [1, 3, 1, 3]
    assert "on 4 validation crops" in result.metadata["crop_threshold_source"]
    assert "on 2 validation videos" in result.metadata["threshold_source"]


def _keras_imagenet_file(spec: Backbone, size: int, folder: Path) -> Path:
    """A stand-in for Keras' ImageNet download of ``spec``, made from its architecture: a
    legacy full-model .h5 whose EfficientNet Normalization holds the std, as Keras' files do."""
    source = spec.constructor(weights=None, include_top=False, input_shape=(size, size, 3),
                              pooling="avg")
    for layer in source.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt_mean.assign(IMAGENET_MEAN_RGB)
            layer.adapt_variance.assign(IMAGENET_STDDEV_RGB)
            layer.finalize_state()
    path = folder / spec.model.imagenet_file
    source.save(path)
    return path


SAVE_CASES = [pytest.param("tiny", 16, id="tiny"),
              pytest.param("efficientnetb0", 32, id="efficientnetb0", marks=pytest.mark.slow),
              pytest.param("efficientnetb4", 32, id="efficientnetb4", marks=pytest.mark.slow),
              pytest.param("xception", 71, id="xception", marks=pytest.mark.slow)]


def _stem(model, x: np.ndarray) -> np.ndarray:
    """The classifier's first convolution's output: what its scaling feeds the backbone (the
    final scores of a random network barely move, so a wrong scaling shows here)."""
    backbone = backbone_of(model)
    conv = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
    y = model.get_layer(models.RESIZE_NAME)(x)
    if models.SCALE_NAME in {layer.name for layer in model.layers}:
        y = model.get_layer(models.SCALE_NAME)(y)
    return np.asarray(keras.Model(backbone.input, conv.output)(y))


def _assert_same_model(copy, trained, x: np.ndarray) -> None:
    stem = _stem(trained, x)
    assert np.abs(stem).max() > 1e-2
    np.testing.assert_allclose(_stem(copy, x), stem, rtol=1e-4, atol=1e-4 * np.abs(stem).max())
    np.testing.assert_allclose(copy.predict(x, verbose=0), trained.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def _serve_imagenet(monkeypatch, spec: Backbone, size: int, folder: Path) -> None:
    """Answer Keras' ImageNet download (ours and keras.applications' own) with a local file."""
    from keras.src.utils import file_utils

    served = {spec.model.imagenet_file: _keras_imagenet_file(spec, size, folder)}

    def get_file(fname: str, origin: str | None = None, **kwargs) -> str:
        return str(served[fname])

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(file_utils, "get_file", get_file)


@pytest.mark.parametrize("name,size", [
    pytest.param(b.name, max(32, b.min_size), id=b.name,
                 marks=[pytest.mark.slow] if b.name == "efficientnetb4" else [])
    for b in BACKBONES.values() if b.has_imagenet])
def test_copy_rebuilt_for_saving_is_the_imagenet_model(tmp_path: Path, monkeypatch, name: str,
                                                       size: int) -> None:
    """train() saves a float32 copy built without weights and given the trained ones: it must
    compute what the model built from ImageNet weights computes (same layers, same scaling)."""
    spec = get_backbone(name)
    _serve_imagenet(monkeypatch, spec, size, tmp_path)
    trained = build_classifier(spec, size, "imagenet", 0.0)
    trained.save_weights(tmp_path / "best.weights.h5")
    copy = build_classifier(spec, size, None, 0.0)
    copy.load_weights(tmp_path / "best.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    _assert_same_model(copy, trained, x)


def test_saved_h5_keeps_efficientnets_pixel_normalization(tmp_path: Path) -> None:
    """Keras' HDF5 loader leaves a nested Normalization at mean 0, variance 1 unless told."""
    spec = get_backbone("efficientnetb0")
    model = build_classifier(spec, 32, None, 0.0)
    norm = next(layer for layer in backbone_of(model).layers
                if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(IMAGENET_MEAN_RGB)
    norm.adapt_variance.assign(np.square(IMAGENET_STDDEV_RGB))
    norm.finalize_state()
    save_model(model, tmp_path / "effb0.h5", {"class_names": ["real", "fake"]})
    loaded, _ = load_model(tmp_path / "effb0.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    _assert_same_model(loaded, model, x)


@pytest.mark.parametrize("name,size", SAVE_CASES)
def test_saved_model_predicts_what_the_trained_model_predicted(
        tmp_path: Path, monkeypatch, name: str, size: int) -> None:
    """Every registry entry, from its ImageNet weights where it has them (a local file served
    where Keras would download it), else from a local weights file."""
    assert {c.values[0] for c in SAVE_CASES} == set(BACKBONES)
    spec = get_backbone(name)
    if spec.has_imagenet:
        _serve_imagenet(monkeypatch, spec, size, tmp_path)
        weights = "imagenet"
    else:
        weights = str(tmp_path / "tiny.weights.h5")
        build_backbone(spec, size, None).save_weights(weights)
    built, build = [], training.build_classifier

    def recording_build(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(training, "build_classifier", recording_build)
    root = write_split(tmp_path / "split", {"train": {"real": 2, "fake": 2},
                                            "val": {"real": 2, "fake": 2}}, size=32, frames=1)
    cfg = TrainConfig(data=root, output=tmp_path / "m", backbone=name, weights=weights,
                      size=size, batch_size=4, head_epochs=0, epochs=1, unfreeze=2,
                      precision="float32")
    result = train(cfg, verbose=0)
    trained = built[0]  # one epoch: its weights are the best
    crops = np.stack([read_rgb(p) for p in result.val_paths]).astype("float32")
    saved, _ = load_classifier(result.model_path)
    _assert_same_model(saved, trained, crops)
    np.testing.assert_allclose(saved.predict(crops, verbose=0)[:, 0], result.val_scores,
                               rtol=1e-5, atol=1e-6)


def test_training_errors_are_one_line(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 2, "fake": 2},
                                            "val": {"real": 2, "fake": 0}}, size=16)
    base = TrainConfig(data=root, output=tmp_path / "m", **TINY_RUN)
    with pytest.raises(PipelineError, match="split 'val' .* has no fake crops"):
        train(base, verbose=0)
    with pytest.raises(PipelineError, match="below tiny's minimum"):
        train(replace(base, size=8), verbose=0)
    with pytest.raises(PipelineError, match="split folder not found"):
        train(replace(base, data=tmp_path / "nowhere"), verbose=0)


def test_unreadable_crop_stops_training_with_its_name(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", size=16)
    broken = next((root / "train" / "fake").rglob("*.jpg"))
    broken.write_bytes(b"truncated")
    cfg = TrainConfig(data=root, output=tmp_path / "m", **{**TINY_RUN, "size": 16})
    with pytest.raises(PipelineError, match=f"cannot read image .*{broken.name}"):
        train(cfg, verbose=0)


def test_cli_reports_a_bad_size_in_one_line(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 1, "fake": 1},
                                            "val": {"real": 1, "fake": 1}}, size=16)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, str(REPO / "train.py"), "--data", str(root),
                          "--output", str(tmp_path / "m"), "--backbone", "xception",
                          "--weights", "none", "--size", "64"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "error: --size 64 is below xception's minimum of 71 pixels: use --size 71 or more "
        "(default 299)")


@pytest.mark.slow
def test_xception_at_its_minimum_size(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", {"train": {"real": 2, "fake": 2},
                                            "val": {"real": 1, "fake": 1}}, size=71)
    cfg = TrainConfig(data=root, output=tmp_path / "m", backbone="xception", weights="none",
                      size=71, batch_size=4, epochs=1)
    result = train(cfg, verbose=0)
    model, meta = load_classifier(result.model_path)
    assert result.model_path.name == "xception_best.h5"
    assert meta["input_size"] == 71 and meta["backbone"] == "xception"
    crops = np.stack([read_rgb(p) for p in result.val_paths]).astype("float32")
    np.testing.assert_allclose(model.predict(crops, verbose=0)[:, 0], result.val_scores,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mirrored_strategy_scales_the_global_batch(tmp_path: Path) -> None:
    root = write_split(tmp_path / "split", size=32)
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dfpipe.train.config import TrainConfig
from dfpipe.train.loop import train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
cfg = TrainConfig(data={str(root)!r}, output={str(tmp_path / "m")!r}, backbone="tiny",
                  weights="none", size=32, batch_size=3, epochs=1)
result = train(cfg, verbose=0, strategy=strategy)
print("RESULT", result.replicas, result.metadata["training"]["global_batch"])
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "RESULT 2 6" in run.stdout
    assert (tmp_path / "m" / "tiny_best.h5").is_file()


def test_phase_boundary_is_where_phase_one_really_ended(tmp_path: Path) -> None:
    """With a learning rate of 0 val AUC never improves: phase 1 stops after 2 of 4 epochs."""
    root = write_split(tmp_path / "split", size=64)
    weights = tmp_path / "tiny_backbone.weights.h5"
    build_backbone(get_backbone("tiny"), 64, None).save_weights(weights)
    cfg = TrainConfig(data=root, output=tmp_path / "models", backbone="tiny",
                      weights=str(weights), size=64, batch_size=4, head_epochs=4, epochs=1,
                      lr=0.0, patience=1, precision="float32", aggregate="median")
    result = train(cfg, verbose=0)
    assert result.metadata["phase_boundary"] == 2
    assert list(pd.read_csv(tmp_path / "models" / "training_log.csv")["epoch"]) == [0, 1, 2]
    assert result.metadata["aggregate"] == "median"


def test_tta_flip_chooses_the_operating_point_and_is_stored_in_it(tmp_path: Path) -> None:
    from dfpipe.core.images import feed_size_of
    from dfpipe.evaluate import run as evaluation
    from dfpipe.scoring.judge import judge_split

    root = write_split(tmp_path / "split")
    result = train(TrainConfig(data=root, output=tmp_path / "m", tta="flip", **TINY_RUN),
                   verbose=0)
    model, meta = load_classifier(result.model_path)
    assert meta["operating_point"]["tta"] == "flip"
    val = read_split(root, "val")
    labels = [c.label for c in val]
    flipped, _ = judge_split(model, val, "mean", 0, feed_size_of(meta), tta="flip")
    plain, _ = judge_split(model, val, "mean", 0, feed_size_of(meta))
    assert not np.allclose(flipped, plain)
    assert meta["crop_threshold"] == pytest.approx(choose_threshold(labels, flipped), abs=1e-6)
    ev = evaluation.evaluate(result.model_path, root, split="val", output=tmp_path / "ev",
                             bootstrap=0, progress=False)
    assert ev["tta"] == "flip"  # evaluate judges as the operating point was chosen
    with pytest.raises(PipelineError, match="unknown --tta 'rotate'"):
        train(TrainConfig(data=root, output=tmp_path / "m2", tta="rotate", **TINY_RUN))

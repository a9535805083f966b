"""The app's inference path: same crops as preprocess, same scores as evaluate, explicit results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from app_support import (
    CENTRE_SPEC,
    app_script,
    as_mjpg_avi,
    blank_video,
    claiming_fps,
    crop_metadata,
    face_video,
    save_tiny_model,
)

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import decode_jpeg, read_rgb
from dfpipe.extract import faces as facelib
from dfpipe.extract.run import Settings, VideoJob, process_video
from dfpipe.extract.video import VideoError
from dfpipe.scoring.crops import score_crops
from dfpipe.scoring.verdict import VERDICT_FAKE, VERDICT_NO_FACE, VERDICT_REAL
from dfpipe.serve.analyzer import Analyzer
from dfpipe.serve.crop_settings import settings_from_metadata
from dfpipe.split import quality


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    face = face_video(root / "face.mp4", n_frames=12)
    blank = blank_video(root / "blank.mp4")
    avi = as_mjpg_avi(face, root / "face.avi")
    data = avi.read_bytes()
    truncated = root / "truncated.avi"
    truncated.write_bytes(data[:int(len(data) * 0.7)])
    return {"face": face, "blank": blank, "truncated": truncated, "root": root}


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "fake.h5", bias=4.0, threshold=0.5,
                           crop=crop_metadata("mtcnn", every=3))


@pytest.fixture(scope="module")
def analyzer(fake_model):
    return Analyzer.load(fake_model)


@pytest.fixture
def centre(monkeypatch):
    monkeypatch.setitem(facelib.DETECTORS, "centre", CENTRE_SPEC)


def test_settings_come_from_the_model_metadata():
    meta = {"crop": crop_metadata("mtcnn", every=7, size=96, margin=1.5)}
    settings, source = settings_from_metadata(meta)
    assert (settings.detector, settings.every, settings.size, settings.margin) == \
        ("mtcnn", 7, 96, 1.5)
    assert settings.min_confidence == 0.9 and source.startswith("the model metadata")
    settings, source = settings_from_metadata(meta, detector="retinaface", frames=5)
    assert settings.detector == "retinaface" and settings.frames == 5 and settings.every is None
    assert "overridden on the command line: detector retinaface, frames 5" in source


def test_null_crop_metadata_falls_back_to_defaults_offline_and_says_so():
    settings, source = settings_from_metadata({"crop": None})
    default = Settings(detector="mtcnn").resolved()
    assert settings == default
    assert source.startswith("preprocess defaults") and "no crop settings" in source
    assert "detector not recorded: mtcnn" in source


def test_unknown_detector_in_metadata_is_one_clear_line():
    with pytest.raises(PipelineError, match="detector 'nope' is unknown.*--detector"):
        settings_from_metadata({"crop": {"detector": "nope"}})


def test_decoded_crop_is_exactly_what_training_reads_from_the_saved_file(tmp_path):
    crop = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    data = facelib.encode_crop(crop)
    (tmp_path / "crop.jpg").write_bytes(data)
    assert np.array_equal(decode_jpeg(data), read_rgb(tmp_path / "crop.jpg"))


def test_same_crops_and_scores_as_preprocess_then_evaluate(tmp_path, media, fake_model, centre):
    """The app's result equals preprocess's crops scored the way evaluate scores them."""
    app = Analyzer.load(fake_model, detector="centre", every=2)
    analysis = app.analyze(media["face"], keep_crops=True)
    result = analysis.result

    job = VideoJob(str(media["face"]), "fake/face.mp4", "fake", "g", "self", "face-0")
    record = process_video(job, app.settings, facelib.build_detector("centre"), tmp_path)
    assert record["status"] == "ok"
    assert [f["frame"] for f in result["faces"]] == [c["frame"] for c in record["crops"]]
    assert [f["box"] for f in result["faces"]] == [c["box"] for c in record["crops"]]
    saved = [read_rgb(tmp_path / c["file"]) for c in record["crops"]]
    for mine, theirs in zip(analysis.crops, saved, strict=True):
        assert np.array_equal(mine, theirs)
    scores = score_crops(app.model, saved, batch_size=4)
    assert [f["score"] for f in result["faces"]] == pytest.approx(list(scores), abs=1e-5)
    video = float(np.mean(scores))  # the metadata's K covers all six crops
    assert result["score"] == pytest.approx(video, abs=1e-6)
    assert result["video"]["frames_sampled"] == 6 and result["video"]["faces"] == 6


def test_verdict_score_margin_and_per_frame_result(analyzer, media):
    result = analyzer.analyze(media["face"]).result
    assert result["verdict"] == VERDICT_FAKE and result["score"] > 0.9
    assert result["margin"] == pytest.approx(result["score"] - 0.5)
    assert result["borderline"] is False and result["agreement"] == 1.0
    assert [f["frame"] for f in result["frames"]] == [0, 3, 6, 9]
    assert all(f["faces"] == 1 and 0 <= f["score"] <= 1 for f in result["frames"])
    assert result["frames"][1]["time_s"] == pytest.approx(0.3)
    assert len(result["faces"]) == 4 and all(f["confidence"] >= 0.9 for f in result["faces"])
    timing = result["timing"]
    assert set(timing) >= {"decode_s", "detect_s", "classify_s", "total_s"}
    assert timing["total_s"] >= timing["detect_s"] + timing["classify_s"] > 0
    json.dumps(result)  # a plain, JSON-ready dict


def test_threshold_and_rule_decide_the_verdict(fake_model, media):
    high = Analyzer.load(fake_model, threshold=0.999, aggregate="median")
    result = high.analyze(media["face"]).result
    assert result["verdict"] == VERDICT_REAL and result["margin"] < 0
    assert result["aggregate"] == "median"
    assert result["threshold_source"] == "the command line (--threshold)"


def test_real_model_says_real(tmp_path, media):
    path = save_tiny_model(tmp_path / "real.h5", bias=-4.0, threshold=0.5,
                           crop=crop_metadata("mtcnn", every=4))
    result = Analyzer.load(path).analyze(media["face"]).result
    assert result["verdict"] == VERDICT_REAL and result["score"] < 0.1


def test_video_without_a_face_is_an_explicit_result(analyzer, media):
    result = analyzer.analyze(media["blank"]).result
    assert result["verdict"] == VERDICT_NO_FACE and result["score"] is None
    assert result["faces"] == [] and result["video"]["frames_sampled"] == 3
    assert "no face" in result["message"]


def test_truncated_video_is_judged_on_what_was_read(analyzer, media):
    result = analyzer.analyze(media["truncated"]).result
    assert 0 < result["video"]["frames_read"] < result["video"]["frames_reported"] == 12
    assert result["verdict"] in (VERDICT_FAKE, VERDICT_REAL)
    assert any("ended early" in w for w in result["warnings"])


def test_undecodable_file_raises_video_error(analyzer, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(VideoError):
        analyzer.analyze(junk)


def test_missing_crop_metadata_is_reported(tmp_path, media):
    path = save_tiny_model(tmp_path / "nocrop.h5", bias=4.0, crop=None)
    app = Analyzer.load(path, every=4)
    info = app.describe()
    assert info["crop_from_metadata"] is False and "preprocess defaults" in info["crop_source"]
    result = app.analyze(media["face"]).result
    assert any(w.startswith("crop settings unknown") for w in result["warnings"])
    assert result["crop_unknown"] == ["margin", "size", "detector"]


def test_partly_recorded_crop_settings_are_named_in_result_log_and_predict(tmp_path, media,
                                                                          caplog, capsys):
    """A model trained on crops whose margin was never recorded: the app says so, everywhere."""
    crop = crop_metadata("mtcnn", every=4)
    crop.pop("margin")
    crop["settings"].pop("margin")
    path = save_tiny_model(tmp_path / "nomargin.h5", bias=4.0, crop=crop)
    with caplog.at_level("WARNING"):
        app = Analyzer.load(path)
        result = app.analyze(media["face"]).result
    assert app.describe()["crop_unknown"] == ["margin"] == result["crop_unknown"]
    notice = next(w for w in result["warnings"] if w.startswith("crop settings unknown"))
    assert "does not record margin" in notice and "margin 1.3" in notice
    assert caplog.text.count("crop settings unknown") >= 2  # at load and for the video
    code = app_script().main(["predict", str(media["face"]), "--model", str(path),
                              "--out", str(tmp_path / "r.csv")])
    assert code == 0 and "note: crop settings unknown" in capsys.readouterr().out
    known = Analyzer.load(save_tiny_model(tmp_path / "full.h5", crop=crop_metadata("mtcnn")))
    assert known.crop_unknown == [] and not known.crop_notice


def test_detector_is_checked_before_the_model_loads(tmp_path, monkeypatch):
    import dfpipe.models.saving

    path = save_tiny_model(tmp_path / "r.h5", crop=crop_metadata("retinaface"))

    def refuse(name):
        raise PipelineError(f"{name} weights missing")

    def loaded(*_):
        raise AssertionError("the model was loaded before the cheap checks")

    monkeypatch.setattr(facelib, "preflight", refuse)
    monkeypatch.setattr(dfpipe.models.saving, "load_classifier", loaded)
    with pytest.raises(PipelineError, match="retinaface weights missing"):
        Analyzer.load(path)
    with pytest.raises(PipelineError, match="--out must end in .csv or .json"):
        app_script().main(["predict", str(path), "--model", str(tmp_path / "r.h5"),
                           "--out", str(tmp_path / "r.txt")])


def test_predict_command_writes_one_row_per_video(tmp_path, fake_model, media):
    app = app_script()
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("face.mp4", "blank.mp4"):
        (folder / name).write_bytes(media[name.replace(".mp4", "")].read_bytes())
    (folder / "broken.mp4").write_bytes(b"garbage" * 50)
    (folder / "list.mp4").write_text("ffconcat version 1.0\nfile 'face.mp4'\n")
    out = tmp_path / "results.csv"
    assert app.main(["predict", str(folder), "--model", str(fake_model),
                            "--out", str(out)]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert rows["face.mp4"]["verdict"] == "FAKE" and float(rows["face.mp4"]["score"]) > 0.9
    assert rows["blank.mp4"]["verdict"] == "NO FACE FOUND"
    assert rows["broken.mp4"]["status"] == "error" and rows["broken.mp4"]["message"]
    assert rows["list.mp4"]["status"] == "error"
    assert "not a supported container" in rows["list.mp4"]["message"]
    assert float(rows["face.mp4"]["classify_s"]) > 0

    out_json = tmp_path / "results.json"
    app.main(["predict", str(media["face"]), "--model", str(fake_model),
                     "--out", str(out_json), "--threshold", "0.999"])
    data = json.loads(out_json.read_text())
    assert data["videos"][0]["verdict"] == "REAL"
    assert len(data["results"][0]["result"]["faces"]) == 4


def test_predict_refuses_missing_input_and_bad_output(tmp_path, fake_model, media):
    app = app_script()
    with pytest.raises(PipelineError, match="not found"):
        app.main(["predict", str(tmp_path / "nope.mp4"), "--model", str(fake_model)])
    with pytest.raises(PipelineError, match=r"\.csv or \.json"):
        app.main(["predict", str(media["face"]), "--model", str(fake_model),
                         "--out", str(tmp_path / "x.txt")])


def test_work_per_video_is_bounded_by_what_is_decoded(analyzer, media, tmp_path):
    from dfpipe.serve.frames import LimitExceeded, Limits

    fast = claiming_fps(media["face"], tmp_path / "fast.avi", 1000.0, 5)  # 60 frames, "0.06 s"
    result = analyzer.analyze(fast, limits=Limits(max_frames=12)).result
    video = result["video"]
    assert video["frames_read"] == 12 and video["frames_capped"] is True
    assert [f["frame"] for f in result["frames"]] == [0, 3, 6, 9]
    assert any("stopped reading after 12 frames" in w for w in result["warnings"])
    assert result["verdict"] == VERDICT_FAKE

    few = analyzer.analyze(media["face"], limits=Limits(max_faces=2)).result
    assert few["video"]["faces"] == 2 and few["video"]["faces_capped"] is True
    assert any("stopped after 2 face crops" in w for w in few["warnings"])

    with pytest.raises(LimitExceeded, match="longer than the 1e-06 s limit"):
        analyzer.analyze(media["face"], limits=Limits(timeout_s=1e-6))
    with pytest.raises(LimitExceeded, match="exceeds the limit of 100 pixels"):
        analyzer.analyze(media["face"], limits=Limits(max_pixels=100))


def test_predict_takes_the_frame_and_face_caps(tmp_path, fake_model, media):
    out = tmp_path / "capped.json"
    app_script().main(["predict", str(media["face"]), "--model", str(fake_model), "--out",
                       str(out), "--max-frames", "6", "--max-faces", "1"])
    result = json.loads(out.read_text())["results"][0]["result"]
    assert result["video"]["frames_read"] == 6 and result["video"]["faces"] == 1


def test_the_app_applies_the_stored_rule_and_both_thresholds(caplog):
    """Videos: the model's rule and video threshold; per-crop calls: its crop threshold."""
    meta = {"crop": crop_metadata("mtcnn", every=3), "aggregate": "max",
            "aggregate_source": "train.py --aggregate", "threshold": 0.3,
            "threshold_source": "val videos", "crop_threshold": 0.7,
            "crop_threshold_source": "val crops"}
    app = Analyzer(object(), meta)
    assert (app.rule, app.threshold, app.crop_threshold) == ("max", 0.3, 0.7)
    assert app.describe()["crop_threshold"] == 0.7
    assert Analyzer(object(), meta, aggregate="mean", threshold=0.6).rule == "mean"
    with caplog.at_level("WARNING"):
        old = Analyzer(object(), {"crop": meta["crop"], "threshold": 0.4})
    assert (old.rule, old.threshold, old.crop_threshold) == ("mean", 0.4, 0.4)
    assert "predates video-level thresholds" in caplog.text


def test_the_app_applies_the_training_quality_rules(tmp_path, media, centre):
    """Crops training's filter would drop do not decide the verdict; unfiltered is reported."""
    rules = {"min_face": 0, "min_sharpness": 0.0, "min_confidence": 0.0, "max_per_video": 2,
             "source": "test"}
    path = save_tiny_model(tmp_path / "q.h5", seed=3, crop=crop_metadata("centre", every=2),
                           quality=rules)
    app = Analyzer.load(path)
    jpegs = {}
    result = app.analyze(media["face"], on_crop=lambda k, rgb, jpeg: jpegs.update({k: jpeg})
                         ).result
    faces = result["faces"]
    assert len(faces) == 6 and [f["quality_ok"] for f in faces].count(True) == 2
    kept = [f["score"] for f in faces if f["quality_ok"]]
    assert [f["frame"] for f in faces if f["quality_ok"]] == [2, 8]  # spread evenly over time
    assert result["score"] == pytest.approx(float(np.mean(kept)))
    assert result["score_unfiltered"] == pytest.approx(float(np.mean([f["score"]
                                                                       for f in faces])))
    assert result["quality_rules"] == rules
    for k, face in enumerate(faces):  # sharpness measured as split.py measures a saved crop
        (tmp_path / f"{k}.jpg").write_bytes(jpegs[k])
        assert face["sharpness"] == pytest.approx(
            quality.image_sharpness(tmp_path / f"{k}.jpg"), abs=1e-3)
    strict = save_tiny_model(tmp_path / "s.h5", seed=3, crop=crop_metadata("centre", every=2),
                             quality={**rules, "min_face": 10_000, "max_per_video": None})
    result = Analyzer.load(strict).analyze(media["face"]).result
    assert result["score"] == pytest.approx(result["score_unfiltered"])
    assert any("passes the training quality rules" in w for w in result["warnings"])


def test_tf_runtime_finds_faces_with_the_exported_mtcnn_when_given(tmp_path, media):
    from dfpipe.extract.mtcnn_export import export_mtcnn
    from dfpipe.extract.mtcnn_onnx import OnnxMTCNN

    model = save_tiny_model(tmp_path / "tiny.h5", bias=0.3, crop=crop_metadata("mtcnn"))
    folder = export_mtcnn(tmp_path / "mtcnn_onnx")
    package = Analyzer.load(model, detector="mtcnn")
    exported = Analyzer.load(model, detector="mtcnn", mtcnn_onnx=folder, precision="bfloat16")
    assert isinstance(exported.detector(), OnnxMTCNN)
    assert not isinstance(package.detector(), OnnxMTCNN)
    want = package.analyze(media["face"]).result
    got = exported.analyze(media["face"]).result
    assert exported.describe()["face_detector_runtime"] == "onnx"
    assert got["precision"] == "bfloat16" and want["precision"] == "float32"
    assert len(got["faces"]) == len(want["faces"]) > 0
    for a, b in zip(got["faces"], want["faces"], strict=True):
        assert np.max(np.abs(np.subtract(a["box"], b["box"]))) <= 2.0
    assert got["verdict"] == want["verdict"]
    assert got["score"] == pytest.approx(want["score"], abs=0.05)


def test_exported_mtcnn_with_another_detector_is_refused(tmp_path):
    model = save_tiny_model(tmp_path / "tiny.h5", crop=crop_metadata("mtcnn"))
    with pytest.raises(PipelineError, match="--mtcnn-onnx drives MTCNN.*--detector mtcnn"):
        Analyzer.load(model, detector="retinaface", mtcnn_onnx=tmp_path / "none")

"""evaluate.py end to end on a tiny split and a tiny model whose scores are known in advance."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from dfpipe.core.errors import PipelineError, run_cli
from dfpipe.core.files import metadata_sidecar
from dfpipe.core.images import read_rgb
from dfpipe.evaluate import report
from dfpipe.evaluate import run as evaluation

keras = pytest.importorskip("keras")
modelio = pytest.importorskip("dfpipe.models.saving")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# video id -> (label, folder under test/<label>/, grey level of each crop)
# f2 and f3 share one folder: only split.csv can tell them apart.
VIDEOS = {
    "r1": ("real", "r1", [40, 60, 80]),
    "r2": ("real", "r2", [100, 120, 140]),
    "r3": ("real", "r3", [60, 150, 70]),
    "f1": ("fake", "f1", [200, 220, 180]),
    "f2": ("fake", "clip", [110, 130, 230]),
    "f3": ("fake", "clip", [170, 160, 90]),
}
COLUMNS = ["path", "split", "label", "label_id", "video_id", "group", "frame", "face",
           "face_size", "confidence", "sharpness"]


def brightness_model() -> keras.Model:
    """P(fake) = sigmoid(10 * g - 5), g the crop's mean intensity / 255: brighter is faker."""
    inp = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    dense = keras.layers.Dense(1, activation="sigmoid")
    out = dense(x)
    dense.set_weights([np.full((3, 1), 10 / 3, np.float32), np.array([-5.0], np.float32)])
    return keras.Model(inp, out)


def expected_score(path: Path) -> float:
    g = read_rgb(path).mean() / 255
    return float(1 / (1 + np.exp(-(10 * g - 5))))


def write_split(root: Path, videos: dict, split: str = "test", table: bool = True) -> Path:
    rows = []
    for video_id, (label, folder, levels) in videos.items():
        for frame, level in enumerate(levels):
            rel = Path(split) / label / folder / f"{video_id}_{frame:06d}_00.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), np.full((24, 24, 3), level, np.uint8))
            rows.append({"path": rel.as_posix(), "split": split, "label": label,
                         "label_id": int(label == "fake"), "video_id": video_id,
                         "group": f"g-{video_id}", "frame": frame, "face": 0,
                         "face_size": 100, "confidence": 0.99, "sharpness": 50})
    if table:
        with open(root / "split.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny_best.h5"
    modelio.save_model(brightness_model(), path, {
        "class_names": ["real", "fake"], "threshold": 0.5, "input_size": 24,
        "backbone": "tiny", "threshold_source": "validation videos: max balanced accuracy",
        "crop_threshold": 0.5, "crop_threshold_source": "validation crops",
        "aggregate": "mean", "aggregate_source": "train.py --aggregate",
        "config": {"head_epochs": 1}, "phase_boundary": 1})
    (path.parent / "training_log.csv").write_text(
        "epoch,auc,loss,val_auc,val_loss\n0,0.6,0.7,0.55,0.72\n1,0.8,0.5,0.7,0.6\n")
    return path


@pytest.fixture(scope="module")
def split_root(tmp_path_factory) -> Path:
    return write_split(tmp_path_factory.mktemp("split"), VIDEOS)


@pytest.fixture(scope="module")
def run(model_path, split_root, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    result = evaluation.evaluate(model_path, split_root, output=out, bootstrap=100,
                                 batch_size=4, progress=False)
    return result, out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_scores_and_videos_match_an_independent_computation(run, split_root):
    result, out = run
    frames = read_csv(out / report.CROPS_CSV)
    assert len(frames) == 18
    for row in frames:
        assert float(row["score"]) == pytest.approx(expected_score(split_root / row["path"]),
                                                    abs=1e-5)
    videos = {row["video_id"]: row for row in read_csv(out / report.VIDEOS_CSV)}
    assert set(videos) == set(VIDEOS)  # f2 and f3 stay apart although they share a folder
    correct = 0
    for video_id, (label, _, _) in VIDEOS.items():
        own = [float(r["score"]) for r in frames if r["video_id"] == video_id]
        assert float(videos[video_id]["score"]) == pytest.approx(np.mean(own), abs=1e-9)
        assert videos[video_id]["label"] == label and videos[video_id]["crops"] == "3"
        assert videos[video_id]["group"] == f"g-{video_id}"
        correct += (np.mean(own) >= 0.5) == (label == "fake")
    assert result["videos"]["metrics"]["accuracy"] == pytest.approx(correct / 6)
    frame_correct = sum(r["correct"] == "1" for r in frames)
    assert result["crops"]["metrics"]["accuracy"] == pytest.approx(frame_correct / 18)
    assert (result["crops"]["count"], result["videos"]["count"]) == (18, 6)


def test_threshold_model_and_data_are_recorded(run, model_path):
    result, out = run
    data = json.loads((out / report.METRICS_JSON).read_text())
    assert data["threshold"] == {
        "value": 0.5, "source": "the model metadata (validation videos: max balanced accuracy)",
        "level": "videos"}
    assert data["crop_threshold"] == {
        "value": 0.5, "source": "the model metadata (validation crops)", "level": "crops"}
    assert data["aggregation"]["source"] == "the model metadata (train.py --aggregate)"
    assert data["model"]["backbone"] == "tiny" and data["model"]["input_size"] == 24
    assert data["data"]["source"] == "split.csv" and data["data"]["split"] == "test"
    assert data["aggregation"]["rule"] == "mean"
    assert data["crops"]["ci"]["unit"] == "cluster"
    assert data["frames"] == data["crops"]  # the old key stays, for readers of older files
    assert data == json.loads(json.dumps(result))


def test_every_figure_is_a_valid_png(run):
    result, out = run
    assert sorted(result["figures"]) == sorted(evaluation.FIGURE_FILES.values())
    assert result["skipped_figures"] == {}
    for name in result["figures"]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        assert cv2.imread(str(out / name)) is not None


def test_report_numbers_equal_metrics_json(run):
    _, out = run
    data = json.loads((out / report.METRICS_JSON).read_text())
    text = (out / report.METRICS_TEXT).read_text()
    for name, label in report.METRIC_LABELS.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  {label}  "))
        tokens = re.findall(r"n/a|\d+\.\d+", line[len(label) + 2:])
        want = []
        for level in ("crops", "videos"):
            value = data[level]["metrics"][name]
            want.append("n/a" if value is None else f"{value:.4f}")
            want += [f"{v:.4f}" for v in (data[level]["ci"].get(name) or [])]
        assert tokens == want, name
    assert "18       9       9" in text and "6       3       3" in text


def test_threshold_option_overrides_the_model(model_path, split_root, tmp_path):
    result = evaluation.evaluate(model_path, split_root, output=tmp_path, threshold=0.9,
                                 crop_threshold=0.9, bootstrap=0, progress=False)
    assert result["threshold"] == {"value": 0.9, "source": "the command line (--threshold)",
                                   "level": "videos"}
    # sigmoid(10 * grey / 255 - 5) >= 0.9 only for the fake greys 200, 220, 230 (0.945, 0.974,
    # 0.982); the next brightest, fake 180, gives 0.887 and the brightest real, 150, 0.850
    cm = result["crops"]["confusion_matrix"]
    assert cm["fp"] == 0 and cm["tp"] == 3
    assert result["crops"]["ci"] is None
    assert "bootstrap    off" in (tmp_path / report.METRICS_TEXT).read_text()


def test_folder_without_split_table_and_other_rules(model_path, tmp_path):
    videos = {k: v for k, v in VIDEOS.items() if v[1] != "clip"}
    videos["f2"] = ("fake", "f2", VIDEOS["f2"][2])
    root = write_split(tmp_path / "other_dataset", videos, split="holdout", table=False)
    result = evaluation.evaluate(model_path, root, split="holdout", aggregate="max",
                                 output=tmp_path / "out", bootstrap=0, progress=False)
    assert result["data"]["source"] == "folders"
    rows = {r["video_id"]: r for r in read_csv(tmp_path / "out" / report.VIDEOS_CSV)}
    assert set(rows) == {"r1", "r2", "r3", "f1", "f2"}
    assert float(rows["r3"]["score"]) == pytest.approx(float(rows["r3"]["crop_score_max"]))


def test_one_class_split_without_training_log_degrades_gracefully(model_path, tmp_path):
    alone = tmp_path / "models"
    alone.mkdir()
    for src in (model_path, metadata_sidecar(model_path)):
        shutil.copy(src, alone / src.name)
    root = write_split(tmp_path / "reals", {k: v for k, v in VIDEOS.items() if v[0] == "real"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "roc_curves.png").write_bytes(b"stale figure from an earlier run")
    result = evaluation.evaluate(alone / model_path.name, root, output=out, bootstrap=50,
                                 progress=False)
    for level in ("crops", "videos"):
        m, undefined = result[level]["metrics"], result[level]["undefined"]
        assert m["roc_auc"] is None and m["eer"] is None and m["recall"] is None
        assert {"roc_auc", "average_precision", "eer", "recall", "f1"} <= set(undefined)
        assert m["accuracy"] is not None
    assert result["crops"]["ci"]["roc_auc"] is None
    assert result["skipped_figures"] == {
        "roc_curves.png": "needs both real and fake samples; this set has only real",
        "pr_curves.png": "needs both real and fake samples; this set has only real",
        "training_curves.png": "no training_log.csv beside the model"}
    assert result["model"]["training_log"] is None
    assert not (out / "roc_curves.png").exists()
    text = (out / report.METRICS_TEXT).read_text()
    assert "ROC-AUC: needs both real and fake samples; this set has only real" in text
    for name in result["figures"]:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE


@pytest.fixture()
def bad_models(tmp_path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"this is not an HDF5 file")
    plain = tmp_path / "plain.h5"
    brightness_model().save(plain)
    return {"missing": tmp_path / "nope.h5", "corrupt": corrupt, "plain": plain}


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "model file not found"),
    ("corrupt", "not a valid HDF5 model file"),
    ("plain", "has no dfpipe metadata"),
])
def test_bad_model_files_are_one_clear_error(bad_models, split_root, tmp_path, kind, message):
    with pytest.raises(PipelineError, match=message):
        evaluation.evaluate(bad_models[kind], split_root, output=tmp_path / "out",
                            progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_split_and_bad_options_are_one_clear_error(model_path, split_root, tmp_path):
    with pytest.raises(PipelineError, match="no crops in split 'val'"):
        evaluation.evaluate(model_path, split_root, split="val", output=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "split.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(PipelineError, match="no crops in split 'test'"):
        evaluation.evaluate(model_path, empty, output=tmp_path)
    with pytest.raises(PipelineError, match=r"threshold 1.5 is not a probability"):
        evaluation.evaluate(model_path, split_root, threshold=1.5, output=tmp_path)
    with pytest.raises(PipelineError, match="unknown aggregation rule"):
        evaluation.evaluate(model_path, split_root, aggregate="vote", output=tmp_path)


def test_an_unreadable_crop_is_one_clear_error_naming_it(model_path, tmp_path):
    root = write_split(tmp_path / "broken", {"a": ("real", "a", [10, 20])})
    (root / "test/real/a/a_000001_00.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PipelineError, match=r"cannot read image .*a_000001_00\.jpg"):
        evaluation.evaluate(model_path, root, output=tmp_path / "out", progress=False)


def test_a_video_with_two_labels_is_refused(model_path, tmp_path):
    root = write_split(tmp_path / "mixed", {"a": ("real", "a", [10]), "b": ("fake", "b", [10])})
    table = (root / "split.csv").read_text().replace(",b,g-b,", ",a,g-a,")
    (root / "split.csv").write_text(table)
    with pytest.raises(PipelineError, match="video a has both real and fake crops"):
        evaluation.evaluate(model_path, root, output=tmp_path / "out")


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_runs_and_prints_a_summary(model_path, split_root, tmp_path, capsys):
    script = load_script()
    code = script.main(["--model", str(model_path), "--data", str(split_root), "--output",
                        str(tmp_path / "res"), "--aggregate", "confident", "--bootstrap", "20"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "crops: 18 (9 real, 9 fake)" in printed and "videos: 6 (3 real, 3 fake)" in printed
    data = json.loads((tmp_path / "res" / report.METRICS_JSON).read_text())
    assert data["aggregation"]["rule"] == "confident"


def test_cli_error_is_one_line_and_exit_code_2(split_root, tmp_path, capsys, monkeypatch):
    script = load_script()
    monkeypatch.setattr("sys.argv", ["evaluate.py", "--model", str(tmp_path / "x.h5"),
                                     "--data", str(split_root)])
    with pytest.raises(SystemExit) as exc:
        run_cli(script.main)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: model file not found")


def test_cli_help_names_every_option_and_default(capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--data", "--split", "--aggregate", "--threshold", "--output",
                   "--batch-size", "--bootstrap", "--seed"):
        assert option in text
    flat = " ".join(text.split())
    assert "(default: evaluation_results)" in flat and "the rule stored with the model" in flat


def _model_with(tmp_path: Path, name: str, **meta) -> Path:
    path = tmp_path / name
    modelio.save_model(brightness_model(), path, {"class_names": ["real", "fake"],
                                                  "input_size": 24, **meta})
    return path


def test_evaluate_defaults_to_the_stored_rule_and_both_thresholds(split_root, tmp_path):
    """Videos are judged with the model's rule and video threshold, crops with its crop one."""
    path = _model_with(tmp_path, "m.h5", aggregate="max", aggregate_source="train.py",
                       threshold=0.8, threshold_source="val videos", crop_threshold=0.9,
                       crop_threshold_source="val crops")
    result = evaluation.evaluate(path, split_root, output=tmp_path / "out", bootstrap=0,
                                 progress=False)
    assert result["aggregation"]["rule"] == "max"
    assert result["threshold"]["value"] == 0.8 and result["crop_threshold"]["value"] == 0.9
    assert result["crops"]["threshold"] == 0.9 and result["videos"]["threshold"] == 0.8
    rows = {r["video_id"]: r for r in read_csv(tmp_path / "out" / report.VIDEOS_CSV)}
    assert float(rows["r3"]["score"]) == pytest.approx(float(rows["r3"]["crop_score_max"]))
    text = (tmp_path / "out" / report.METRICS_TEXT).read_text()
    assert "videos 0.8000 from the model metadata (val videos)" in text
    assert "crops  0.9000 from the model metadata (val crops)" in text


def test_old_model_without_video_keys_loads_with_a_notice(split_root, tmp_path, caplog):
    path = _model_with(tmp_path, "old.h5", threshold=0.6,
                       threshold_source="max Youden's J on validation crops")
    with caplog.at_level("WARNING"):
        result = evaluation.evaluate(path, split_root, output=tmp_path / "out", bootstrap=0,
                                     progress=False)
    assert "predates video-level thresholds" in caplog.text
    assert result["aggregation"]["rule"] == "mean"
    assert "no rule" in result["aggregation"]["source"]
    assert result["threshold"]["value"] == result["crop_threshold"]["value"] == 0.6
    assert "chosen on crops" in result["threshold"]["source"]


def test_coverage_and_uncovered_videos_scored_one_half(model_path, tmp_path):
    """Videos split.py could not keep count: coverage, and video metrics with them at 0.5."""
    root = write_split(tmp_path / "covered", VIDEOS)
    (root / "dropped_videos.csv").write_text(
        "split,video_id,label,group,group_rule,relpath,reason,detail\n"
        "test,r9,real,g-r9,self,real/r9.mp4,no_face,no face\n"
        "test,f9,fake,g-r1,labels_csv,fake/f9.mp4,error,cannot open\n"
        "val,v1,real,g-v1,self,real/v1.mp4,filtered,all 3 crops removed\n")
    result = evaluation.evaluate(model_path, root, output=tmp_path / "out", bootstrap=50,
                                 progress=False)
    cov = result["coverage"]
    assert (cov["videos_scored"], cov["videos_in_split"], cov["uncovered"]) == (6, 8, 2)
    assert cov["fraction"] == 0.75 and cov["uncovered_by_reason"] == {"error": 1, "no_face": 1}
    half = result["videos_uncovered_at_half"]
    assert (half["count"], half["real"], half["fake"]) == (8, 4, 4)
    covered_right = round(result["videos"]["metrics"]["accuracy"] * 6)
    # at threshold 0.5 a 0.5 score is called fake: the fake f9 is right, the real r9 wrong
    assert half["metrics"]["accuracy"] == pytest.approx((covered_right + 1) / 8)
    saved = json.loads((tmp_path / "out" / report.METRICS_JSON).read_text())
    assert saved["coverage"] == cov and saved["videos_uncovered_at_half"]["count"] == 8
    text = (tmp_path / "out" / report.METRICS_TEXT).read_text()
    assert "coverage     6 of 8 videos scored (75.0%); uncovered: error 1, no_face 1" in text
    assert "2 uncovered ones scored 0.5" in text
    plain = evaluation.evaluate(model_path, write_split(tmp_path / "plain", VIDEOS),
                                output=tmp_path / "o2", bootstrap=0, progress=False)
    assert plain["coverage"]["known"] is False and plain["videos_uncovered_at_half"] is None


def test_video_bootstrap_resamples_identity_groups(model_path, tmp_path):
    root = write_split(tmp_path / "grouped", VIDEOS)
    table = (root / "split.csv").read_text()
    for video, group in (("r1", "A"), ("f1", "A"), ("r2", "B"), ("f2", "B"), ("r3", "C"),
                         ("f3", "C")):
        table = table.replace(f",{video},g-{video},", f",{video},{group},")
    (root / "split.csv").write_text(table)
    result = evaluation.evaluate(model_path, root, output=tmp_path / "out", bootstrap=30,
                                 progress=False)
    for level in ("crops", "videos"):
        assert result[level]["ci"]["unit"] == "cluster"
        assert result[level]["ci"]["clusters"] == 3, level


def test_evaluate_on_validation_measures_what_training_recorded(tmp_path):
    from split_support import write_split

    from dfpipe.train.config import TrainConfig
    from dfpipe.train.loop import train

    root = write_split(tmp_path / "split", {"train": {"real": 4, "fake": 4},
                                            "val": {"real": 4, "fake": 4}}, size=32, frames=7)
    result = train(TrainConfig(data=root, output=tmp_path / "m", backbone="tiny",
                               weights="none", size=32, batch_size=8, epochs=2,
                               frames_per_video=3, aggregate="max"), verbose=0)
    block = result.metadata["operating_point"]
    assert block["crops_per_video"] == 3 and block["rule"] == "max"
    assert block["val"]["videos"] == 8
    measured = evaluation.evaluate(result.model_path, root, split="val",
                                   output=tmp_path / "ev", bootstrap=0,
                                   progress=False)["operating_point"]["measured"]
    assert measured["videos"] == block["val"]["videos"]
    assert (measured["fpr"], measured["tpr"]) == (block["val"]["fpr"], block["val"]["tpr"])
    assert (measured["crops_used"], measured["crops_found"]) == (8 * 3, 8 * 7)
    rows = read_csv(tmp_path / "ev" / report.VIDEOS_CSV)
    assert {(r["crops"], r["crops_used"]) for r in rows} == {("7", "3")}

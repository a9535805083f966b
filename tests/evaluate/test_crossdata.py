"""Test-only evaluation of unsplit datasets and the cross-dataset table, on shared clips."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
from app_support import save_tiny_model
from conftest import REPO, needs_shared
from layout_support import CELEBDF_TEST, build_celebdf, build_dfdc, preprocess_fast
from split_support import add_manifest_video

from dfpipe.core.errors import PipelineError
from dfpipe.evaluate import run as evaluation
from dfpipe.evaluate.crossdata import CROSS_COLUMNS, expand_data

pytestmark = [needs_shared, pytest.mark.shared, pytest.mark.slow]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("cross")
    celeb = preprocess_fast(build_celebdf(base / "Celeb-DF-v2"), base / "pre_celeb")
    dfdc = preprocess_fast(build_dfdc(base / "dfdc"), base / "pre_dfdc")
    add_manifest_video(dfdc, "dfdc_train_part_0/nofacexyz.mp4", "fake", ["nofacexyz"],
                       "nofacexyz", "dfdc_metadata", status="no_face", dataset="DFDC",
                       method="DFDC", compression=None)
    model = save_tiny_model(base / "models" / "tiny_best.h5", threshold=0.5)
    return {"celeb": celeb, "dfdc": dfdc, "model": model, "base": base}


def _script():
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unsplit_celebdf_scores_exactly_its_official_test_list(world, tmp_path):
    result = evaluation.evaluate(world["model"], world["celeb"], output=tmp_path, bootstrap=0,
                                 progress=False)
    selection = result["data"]["selection"]
    assert "List_of_testing_videos.txt" in selection["protocol"]
    assert selection["videos"] == len(CELEBDF_TEST) == result["videos"]["count"]
    manifest = [json.loads(x) for x in (world["celeb"] / "manifest.jsonl").read_text()
                .splitlines()]
    rel = {r["video_id"]: r["relpath"] for r in manifest}
    with open(tmp_path / "predictions_videos.csv", newline="") as fh:
        scored = {rel[r["video_id"]] for r in csv.DictReader(fh)}
    assert scored == {line.split(" ", 1)[1] for line in CELEBDF_TEST}
    with open(tmp_path / "predictions_videos.csv", newline="") as fh:
        groups = {rel[r["video_id"]]: r["group"] for r in csv.DictReader(fh)}
    # bootstrap clusters by target identity, not the chained preprocess group
    assert groups["Celeb-synthesis/id2_id1_0000.mp4"] == groups["Celeb-real/id2_0000.mp4"]
    assert len(set(groups.values())) == 3
    with open(tmp_path / "per_method.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["level"], r["name"]) for r in table] == [("all", "all"),
                                                        ("method", "Celeb-DF-v2")]
    assert "official test list" in (tmp_path / "metrics_report.txt").read_text()
    assert table[0]["videos_scored"].startswith("official test list List_of_testing_videos")


def test_two_datasets_give_the_cross_dataset_table(world, tmp_path):
    out = tmp_path / "cross"
    code = _script().main(["--model", str(world["model"]), "--data", str(world["celeb"]),
                           "--data", str(world["dfdc"]), "--output", str(out),
                           "--bootstrap", "0"])
    assert code == 0
    with open(out / "cross_dataset.csv", newline="") as fh:
        rows = {r["dataset"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(rows.values()))) == list(CROSS_COLUMNS)
    assert set(rows) == {"Celeb-DF-v2", "DFDC"}
    assert rows["DFDC"]["protocol"].startswith("every video")
    assert (rows["DFDC"]["videos"], rows["DFDC"]["failed"]) == ("5", "1")  # never dropped
    assert rows["Celeb-DF-v2"]["videos"] == "4" and rows["Celeb-DF-v2"]["failed"] == "0"
    md = (out / "cross_dataset.md").read_text()
    assert "| model | Celeb-DF-v2 | DFDC | avg |" in md
    assert md.count("| tiny_best (tiny) |") == 2  # frame AUC and video AUC tables
    assert (out / "cross_dataset.png").read_bytes()[:8] == PNG
    assert (out / "DFDC" / "per_method.csv").is_file()
    assert (out / "Celeb-DF-v2" / "metrics.json").is_file()


def test_a_list_file_names_the_datasets(world, tmp_path):
    listing = tmp_path / "datasets.txt"
    listing.write_text(f"# cross-dataset\n{world['celeb']}\n{world['dfdc']}\n")
    assert expand_data([listing]) == [world["celeb"], world["dfdc"]]
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(PipelineError, match="names no dataset"):
        expand_data([tmp_path / "empty.txt"])


def test_unsplit_ffpp_scores_the_test_pairs_and_tables_per_method(world, tmp_path):
    from layout_support import build_ffpp

    pre = preprocess_fast(build_ffpp(world["base"] / "FaceForensics++"), tmp_path / "pre")
    result = evaluation.evaluate(world["model"], pre, output=tmp_path / "out", bootstrap=0,
                                 progress=False)
    assert result["data"]["selection"]["protocol"] == "official test pairs splits/test.json " \
                                                      "(2 pairs)"
    assert result["videos"]["count"] == 3  # 634, 634_660, 750_743; DFD is in no pair
    with open(tmp_path / "out" / "per_method.csv", newline="") as fh:
        table = {(r["level"], r["name"]): r for r in csv.DictReader(fh)}
    assert set(table) == {("all", "all"), ("method", "FaceSwap"), ("method", "Face2Face"),
                          ("compression", "c23")}
    assert (table[("method", "FaceSwap")]["real_videos"],
            table[("method", "FaceSwap")]["fake_videos"]) == ("1", "1")



def test_the_same_dataset_split_and_unsplit_keeps_two_columns(world, tmp_path):
    from dfpipe.evaluate.crossdata import evaluate_datasets
    from dfpipe.split.run import run_split

    split = tmp_path / "split_celeb"
    run_split(world["celeb"], split, workers=1,
              protocol=world["base"] / "Celeb-DF-v2" / "List_of_testing_videos.txt")
    rows = evaluate_datasets(world["model"], [world["celeb"], split], tmp_path / "out",
                             bootstrap=0, progress=False)
    assert [r["dataset"] for r in rows] == ["Celeb-DF-v2 (pre_celeb)",
                                            "Celeb-DF-v2 (split_celeb)"]
    assert [r["protocol"] for r in rows][1] == "split test"
    md = (tmp_path / "out" / "cross_dataset.md").read_text()
    assert "| model | Celeb-DF-v2 (pre_celeb) | Celeb-DF-v2 (split_celeb) | avg |" in md

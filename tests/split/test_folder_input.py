"""split.py on a folder of face crops with a labels CSV: same split, filter and report path."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from dfpipe.core.errors import PipelineError
from dfpipe.core.files import SPLIT_TABLE
from dfpipe.core.splittable import crop_settings, load_split, read_split_report
from dfpipe.split.folder_input import UNKNOWN_NOTE, CropSettings, load_crop_folder, loader_for

DFDC = SHARED_DATA / "dfdc_faces"


def _script():
    spec = importlib.util.spec_from_file_location("split_script", REPO / "split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


split_script = _script()


def write_crop(path: Path, seed: int, side: int = 32, blurred: bool = False) -> None:
    img = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    if blurred:
        img = cv2.GaussianBlur(img, (0, 0), 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def crops_folder(root: Path, n_groups: int = 24, fakes: int = 2) -> list[list[object]]:
    """One real and ``fakes`` fake crops per group, named without any hint of the group."""
    rows: list[list[object]] = []
    k = 0
    for g in range(n_groups):
        for f in range(1 + fakes):
            label = "real" if f == 0 else "fake"
            rel = f"{label}/img{k:04d}.jpg"
            write_crop(root / rel, seed=k)
            rows.append([rel, label, f"person{g:02d}"])
            k += 1
    return rows


def read_table(root: Path) -> list[dict[str, str]]:
    with open(root / SPLIT_TABLE, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_crops_folder_is_split_by_group_with_every_crop(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = crops_folder(src)
    labels = write_csv(tmp_path / "labels.csv", ["path", "label", "group"], rows)
    out = tmp_path / "split"
    assert split_script.main(["--input", str(src), "--labels", str(labels), "--crop-is-video",
                              "--output", str(out)]) == 0
    table = read_table(out)
    assert sorted(r["path"].rsplit("/", 1)[1] for r in table) == sorted(
        Path(r[0]).name for r in rows)
    where = defaultdict(set)
    for r in table:
        where[r["group"]].add(r["split"])
        assert r["label"] == r["path"].split("/")[1]
    assert set(where) == {f"person{g:02d}" for g in range(24)}
    assert all(len(s) == 1 for s in where.values())
    assert {s for v in where.values() for s in v} == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        crops = load_split(out, split)
        assert {c.label for c in crops} == {0, 1}
        assert all(c.path.is_file() for c in crops)
    report = json.loads((out / "split_report.json").read_text())
    assert report["preprocess"]["note"] == UNKNOWN_NOTE
    assert report["preprocess"]["margin"] is None
    assert report["videos"]["source"] == "crops_folder"
    assert report["videos"]["unknown_quality_fields"] == {"face_size": 72, "confidence": 72}
    crop = crop_settings(read_split_report(out))
    assert crop is not None and crop["margin"] is None and crop["size"] is None
    assert crop["settings"]["note"] == UNKNOWN_NOTE


def test_quality_filter_applies_to_crops_folder(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = crops_folder(src, n_groups=12, fakes=1)
    write_crop(src / rows[3][0], seed=3, blurred=True)
    header = ["path", "label", "group", "face_width", "face_height"]
    sized = [[*r, *((30, 28) if i == 5 else (120, 100))] for i, r in enumerate(rows)]
    labels = write_csv(tmp_path / "labels.csv", header, sized)
    out = tmp_path / "split"
    split_script.main(["--input", str(src), "--labels", str(labels), "--crop-is-video",
                       "--output", str(out)])
    report = json.loads((out / "split_report.json").read_text())
    assert report["filter"]["removed"]["sharpness"] == 1
    assert report["filter"]["removed"]["face_size"] == 1
    kept = {Path(r["path"]).name for r in read_table(out)}
    assert Path(rows[3][0]).name not in kept and Path(rows[5][0]).name not in kept
    assert len(kept) == len(rows) - 2


def test_labels_csv_in_input_is_found_and_dfdc_columns_group_by_source(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = []
    for g in range(15):
        real = f"r{g:03d}"
        write_crop(src / "real" / f"{real}.jpg", seed=g)
        rows.append([f"real/{real}.jpg", "REAL", f"{real}.mp4", f"{real}.mp4", 200, 210])
        fake = f"f{g:03d}"
        write_crop(src / "fake" / f"{fake}.jpg", seed=100 + g)
        rows.append([f"fake/{fake}.jpg", "fake", f"{fake}.mp4", f"{real}.mp4", 190, 180])
    write_csv(src / "labels.csv",
              ["path", "label", "video", "source_video", "face_width", "face_height"], rows)
    out = tmp_path / "split"
    split_script.main(["--input", str(src), "--output", str(out), "--margin", "1.0",
                       "--size", "32"])
    table = read_table(out)
    assert len(table) == 30
    by_video = {r["video_id"]: r for r in table}
    for g in range(15):
        real, fake = by_video[f"r{g:03d}"], by_video[f"f{g:03d}"]
        assert real["group"] == fake["group"] == f"r{g:03d}"
        assert real["split"] == fake["split"]
        assert float(fake["face_size"]) == 190.0
    crop = crop_settings(read_split_report(out))
    assert crop["margin"] == 1.0 and crop["size"] == 32 and crop["detector"] is None
    assert crop["settings"]["unknown"] == ["detector"]


def test_group_column_option(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = crops_folder(src, n_groups=9, fakes=1)
    labels = write_csv(tmp_path / "labels.csv", ["path", "label", "group", "identity"],
                       [[p, lab, "same-for-all", grp] for p, lab, grp in rows])
    crops, _ = load_crop_folder(src, labels, group_column="identity", crop_is_video=True)
    assert len({c.group for c in crops}) == 9
    crops, _ = load_crop_folder(src, labels, crop_is_video=True)
    assert {c.group for c in crops} == {"same-for-all"}
    with pytest.raises(PipelineError, match="--group-column person is not a column"):
        load_crop_folder(src, labels, group_column="person", crop_is_video=True)


def test_a_flat_folder_without_videos_is_refused_unless_each_crop_is_a_video(
        tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = crops_folder(src, n_groups=3, fakes=1)
    labels = write_csv(tmp_path / "labels.csv", ["path", "label"], [r[:2] for r in rows])
    with pytest.raises(PipelineError, match="6 crops have no video .*--crop-is-video"):
        load_crop_folder(src, labels)
    crops, stats = load_crop_folder(src, labels, crop_is_video=True)
    assert len({c.group for c in crops}) == len({c.video_id for c in crops}) == 6
    assert stats["ok_videos_by_label"] == {"real": 3, "fake": 3}
    assert "--crop-is-video" in stats["videos_from"]


def test_without_a_video_column_the_parent_folder_is_the_video(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = []
    for v in range(6):
        label = "fake" if v % 2 else "real"
        for i in range(4):
            rel = f"{label}/clip{v}/{i:03d}.jpg"
            write_crop(src / rel, seed=10 * v + i)
            rows.append([rel, label])
    labels = write_csv(src / "labels.csv", ["path", "label"], rows)
    crops, stats = load_crop_folder(src, labels)
    assert {c.video_id for c in crops} == {f"{'fake' if v % 2 else 'real'}/clip{v}"
                                           for v in range(6)}
    assert stats["videos_from"].startswith("each crop's parent folder")
    out = tmp_path / "split"
    assert split_script.main(["--input", str(src), "--output", str(out), "--seed", "3",
                              "--allow-ungrouped-fakes"]) == 0
    where: dict[str, set[str]] = {}
    for row in read_table(out):
        where.setdefault(row["path"].split("/", 2)[2].rsplit("/", 1)[0], set()).add(row["split"])
    assert len(where) == 6 and all(len(s) == 1 for s in where.values())
    assert "videos: each crop's parent folder" in (out / "split_report.txt").read_text()


def test_video_column_keeps_frames_of_a_video_together(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    rows = []
    for v in range(4):
        for i in range(3):
            rel = f"v{v}/frame{i}.jpg"
            write_crop(src / rel, seed=10 * v + i)
            rows.append([rel, "fake" if v % 2 else "real", f"v{v}.mp4", i * 10])
    labels = write_csv(tmp_path / "l.csv", ["path", "label", "video", "frame"], rows)
    crops, stats = load_crop_folder(src, labels)
    assert stats["videos_in_manifest"] == 4
    assert sorted(c.frame for c in crops if c.video_id == "v1") == [0, 10, 20]


@pytest.mark.parametrize(("content", "message"), [
    ("path,label\nreal/img0000.jpg,maybe\n", "line 2: unknown label 'maybe'"),
    ("path,label\nreal/img0000.jpg,1\n", "unknown label '1'"),
    ("path,label\nreal/nope.jpg,real\nreal/img0000.jpg,real\n",
     "1 of 2 listed paths do not exist .* \\(first: real/nope.jpg\\)"),
    ("file,label\nreal/img0000.jpg,real\n", "needs the columns path,label"),
    ("path,label\nreal/img0000.jpg,real\nreal/img0000.jpg,real\n", "listed twice"),
    ("path,label\n", "lists no crops"),
])
def test_bad_labels_csv_is_refused(tmp_path: Path, content: str, message: str) -> None:
    src = tmp_path / "faces"
    crops_folder(src, n_groups=1, fakes=0)
    labels = tmp_path / "labels.csv"
    labels.write_text(content, encoding="utf-8")
    with pytest.raises(PipelineError, match=message):
        load_crop_folder(src, labels)


def test_split_script_gives_one_line_errors(tmp_path: Path) -> None:
    src = tmp_path / "faces"
    crops_folder(src, n_groups=1, fakes=0)
    cases = [
        (["--labels", str(tmp_path / "absent.csv")], "labels CSV not found"),
        (["--margin", "1.2"], "not a preprocess.py output"),
    ]
    for extra, message in cases:
        run = subprocess.run([sys.executable, str(REPO / "split.py"), "--input", str(src),
                              "--output", str(tmp_path / "out"), *extra],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
        assert run.returncode == 2, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], run.stderr
        assert "Traceback" not in run.stderr


def test_preprocess_output_is_not_taken_for_a_crops_folder(tmp_path: Path) -> None:
    root = tmp_path / "pre"
    root.mkdir()
    (root / "manifest.jsonl").write_text("", encoding="utf-8")
    write_csv(root / "labels.csv", ["path", "label"], [])
    assert loader_for(root, None) is None
    with pytest.raises(PipelineError, match="--group-column describes a crops folder"):
        loader_for(root, None, group_column="person")


def test_crop_settings_are_checked() -> None:
    with pytest.raises(PipelineError, match="--margin must be a positive number"):
        CropSettings(margin=0)
    assert CropSettings(size=224).record(Path("x.csv"))["note"] == (
        "crops folder; size given to split.py, margin, detector unknown")


@pytest.mark.skipif(not (DFDC / "labels.csv").is_file(), reason="../shared/data is absent")
def test_shared_dfdc_faces_first_rows(tmp_path: Path) -> None:
    with open(DFDC / "labels.csv", newline="", encoding="utf-8") as fh:
        lines = fh.readlines()[:401]
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "split"
    split_script.main(["--input", str(DFDC), "--labels", str(labels), "--output", str(out),
                       "--min-sharpness", "0", "--margin", "1.0", "--size", "224"])
    table = read_table(out)
    assert len(table) == 400
    rows = list(csv.DictReader(lines))
    source = {Path(r["video"]).stem: Path(r["source_video"]).stem for r in rows}
    splits_of = defaultdict(set)
    for r in table:
        assert r["group"] == source[r["video_id"]]
        splits_of[r["group"]].add(r["split"])
    assert len(splits_of) == len(set(source.values())) == 200
    assert all(len(s) == 1 for s in splits_of.values())
    report = json.loads((out / "split_report.json").read_text())
    shares = {s: report["splits"][s]["groups"] / 200 for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.7, abs=0.03)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
    assert all(c.path.is_file() for c in load_split(out, "test"))

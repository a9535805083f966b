"""split.py: grouped, stratified, deterministic and leak-free; official protocols honoured."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from dfpipe.core.errors import PipelineError
from dfpipe.core.manifest import append_record
from dfpipe.core.splittable import SPLIT_NAMES, load_split
from dfpipe.split.assign import assign_groups, group_sizes, read_protocol
from dfpipe.split.checks import check_no_leak
from dfpipe.split.manifest_input import load_crops
from dfpipe.split.quality import QualityRules
from dfpipe.split.run import run_split
from dfpipe.split.write import COLUMNS

SHARED = REPO.parent / "shared" / "data"
CROP_SIDE = 24


def write_jpeg(path: Path, seed: int, blurred: bool = False) -> None:
    img = np.random.default_rng(seed).integers(0, 256, (CROP_SIDE, CROP_SIDE, 3), dtype=np.uint8)
    if blurred:
        img = cv2.GaussianBlur(img, (0, 0), 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])


SETTINGS = {"every": 5, "frames": None, "margin": 1.3, "size": 64, "detect_max_side": 640,
            "min_confidence": 0.9, "faces": "largest"}


def add_video(root: Path, video_id: str, label: str, group: str, n_crops: int, *,
              blurred: set[int] = frozenset(), sizes: dict[int, float] | None = None,
              confidences: dict[int, float] | None = None, status: str = "ok",
              group_rule: str = "labels_csv", relpath: str | None = None) -> None:
    """Write a video's crops and its manifest record, as preprocess.py would."""
    crops = []
    for i in range(n_crops if status == "ok" else 0):
        file = f"{label}/{video_id}/{i * 5:06d}_00.jpg"
        seed = int(hashlib.sha1(file.encode()).hexdigest()[:8], 16)
        write_jpeg(root / file, seed, blurred=i in blurred)
        crops.append({"file": file, "frame": i * 5, "face": 0, "box": [10, 10, 110, 120],
                      "face_size": (sizes or {}).get(i, 110),
                      "confidence": (confidences or {}).get(i, 0.99)})
    append_record(root / "manifest.jsonl", {
        "video_id": video_id, "source": f"/data/{label}/{video_id}.mp4",
        "relpath": relpath or f"{label}/{video_id}.mp4", "label": label, "group": group,
        "group_rule": group_rule, "fps": 25.0, "frames_read": 100, "frames_sampled": n_crops,
        "faces_saved": len(crops), "detector": "mtcnn", "settings": SETTINGS, "seconds": 0.1,
        "status": status, "message": "", "crops": crops})


def tempting_dataset(root: Path, n_groups: int = 40, seed: int = 0) -> None:
    """Many videos per group (a real and several fakes made from it): a random split leaks."""
    rng = np.random.default_rng(seed)
    for g in range(n_groups):
        group = f"g{g:03d}"
        if g % 7 != 6:
            add_video(root, f"{group}-r", "real", group, int(rng.integers(3, 6)))
        for f in range(int(rng.integers(1, 4)) if g % 7 != 5 else 0):
            add_video(root, f"{group}_{f}-f", "fake", group, int(rng.integers(3, 6)))


def read_table(out: Path) -> list[dict[str, str]]:
    with open(out / "split.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tempting(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pre") / "preprocessed"
    tempting_dataset(root)
    return root


@pytest.fixture(scope="module")
def split_out(tempting, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("split") / "preprocessed_split"
    return out, run_split(tempting, out, seed=7, workers=2)


def test_no_group_or_video_crosses_splits(tempting, split_out):
    out, report = split_out
    rows = read_table(out)
    # the true group is in each video's name (g003-r, g003_1-f), not taken from the table
    where = defaultdict(set)
    for row in rows:
        where[row["video_id"].split("-")[0].split("_")[0]].add(row["split"])
        where[row["video_id"]].add(row["split"])
    assert len(where) > 40 and all(len(s) == 1 for s in where.values())
    assert {row["split"] for row in rows} == set(SPLIT_NAMES)
    manifest_crops, _ = load_crops(tempting)
    assert len(rows) == len(manifest_crops) == report["filter"]["crops_kept"]
    # the data does tempt a random split: most groups hold several videos
    videos_per_group = defaultdict(set)
    for row in rows:
        videos_per_group[row["group"]].add(row["video_id"])
    assert np.mean([len(v) >= 2 for v in videos_per_group.values()]) > 0.7
    assert report["leak_check"]["passed"] and report["leak_check"]["groups_checked"] == 40


def test_ratios_and_class_balance_within_tolerance(split_out):
    out, report = split_out
    rows = read_table(out)
    videos = {r["video_id"]: r for r in rows}.values()
    fake_all = np.mean([r["label"] == "fake" for r in rows])
    for name, ratio in zip(SPLIT_NAMES, (0.7, 0.15, 0.15), strict=True):
        part = [r for r in rows if r["split"] == name]
        assert abs(len(part) / len(rows) - ratio) < 0.04, name
        assert abs(sum(v["split"] == name for v in videos) / len(videos) - ratio) < 0.04, name
        assert abs(np.mean([r["label"] == "fake" for r in part]) - fake_all) < 0.05, name
        assert report["splits"][name]["crops"] == len(part)


def test_output_layout_matches_the_format_and_load_split_reads_it(tempting, split_out):
    out, report = split_out
    rows = read_table(out)
    assert tuple(rows[0].keys()) == COLUMNS
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    for name in SPLIT_NAMES:
        crops = load_split(out, name)
        assert len(crops) == report["splits"][name]["crops"]
        for c in crops:
            assert c.path.is_file()
            assert c.path.relative_to(out).parts[:2] == (name, ["real", "fake"][c.label])
            assert c.path.parent.name == c.video_id
            assert c.group == c.video_id.split("-")[0].split("_")[0]
    for row in rows:
        assert float(row["sharpness"]) >= 20 and int(row["label_id"]) == ["real", "fake"].index(
            row["label"])
    saved = json.loads((out / "split_report.json").read_text())
    assert saved["splits"] == report["splits"]
    assert "leak check: passed" in (out / "split_report.txt").read_text()


def test_hard_links_by_default_copies_on_request(tempting, split_out, tmp_path):
    out, report = split_out
    row = read_table(out)[0]
    source = tempting / row["path"].split("/", 1)[1]
    assert report["link_mode"] == "hardlink"
    assert os.stat(out / row["path"]).st_ino == os.stat(source).st_ino
    copied = run_split(tempting, tmp_path / "c", seed=7, copy=True, workers=2)
    assert copied["link_mode"] == "copy"
    assert os.stat(tmp_path / "c" / row["path"]).st_ino != os.stat(source).st_ino
    assert (tmp_path / "c" / "split.csv").read_bytes() == (out / "split.csv").read_bytes()


def test_same_input_and_seed_give_the_same_split_byte_for_byte(tempting, split_out, tmp_path):
    out, _ = split_out
    again = tmp_path / "again"
    run_split(tempting, again, seed=7, workers=1)
    for name in ("split.csv", "split_report.json", "split_report.txt"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*"))
    other = tmp_path / "other"
    run_split(tempting, other, seed=8, workers=2)
    assert {(r["group"], r["split"]) for r in read_table(other)} != {
        (r["group"], r["split"]) for r in read_table(out)}


def test_assignment_alone_respects_ratios_for_other_ratios():
    rng = np.random.default_rng(3)
    sizes = {f"g{i}": np.array([rng.integers(0, 20), rng.integers(0, 40), 1, 2], float)
             for i in range(300)}
    sizes = {k: v for k, v in sizes.items() if v[:2].sum()}
    assignment = assign_groups(sizes, (0.5, 0.25, 0.25), seed=1)
    assert set(assignment) == set(sizes)
    crops = {s: sum(sizes[g][:2].sum() for g in sizes if assignment[g] == s) for s in SPLIT_NAMES}
    total = sum(crops.values())
    for name, ratio in zip(SPLIT_NAMES, (0.5, 0.25, 0.25), strict=True):
        assert abs(crops[name] / total - ratio) < 0.02


def test_filters_remove_what_they_should_and_are_reported(tmp_path):
    root = tmp_path / "pre"
    for g in range(6):
        add_video(root, f"r{g}", "real", f"g{g}", 4)
        add_video(root, f"f{g}", "fake", f"g{g}", 4)
    add_video(root, "rq", "real", "g0", 6, blurred={0, 1}, sizes={2: 20}, confidences={3: 0.4})
    add_video(root, "fq", "fake", "g1", 5, sizes={0: 12, 1: 39})
    add_video(root, "nf", "fake", "g2", 0, status="no_face")
    report = run_split(root, tmp_path / "out", workers=2)
    assert report["filter"]["removed"] == {"face_size": 3, "confidence": 1, "unreadable": 0,
                                           "sharpness": 2, "max_per_video": 0}
    assert report["filter"]["crops_in"] == 48 + 11
    kept = {(r["video_id"], int(r["frame"])) for r in read_table(tmp_path / "out")}
    assert len(kept) == 48 + 5
    assert {f for v, f in kept if v == "rq"} == {20, 25}
    assert {f for v, f in kept if v == "fq"} == {10, 15, 20}
    assert report["videos"]["videos_by_status"] == {"no_face": 1, "ok": 14}
    capped = run_split(root, tmp_path / "capped", workers=2,
                       rules=QualityRules(max_per_video=2))
    assert capped["filter"]["removed"]["max_per_video"] == 12 * 2 + 0 + 1
    assert capped["filter"]["crops_kept"] == 14 * 2
    assert {int(r["frame"]) for r in read_table(tmp_path / "capped") if r["video_id"] == "r3"} == {
        5, 15}


def ffpp_dataset(root: Path, ids: list[str]) -> None:
    """FaceForensics++ style: real <id>, fake <id>_<partner>; the manifest's group is the
    target id (as preprocess wrote it before identity groups), the name joins the partner."""
    for a, b in zip(ids[::2], ids[1::2], strict=True):
        for target, source in ((a, b), (b, a)):
            add_video(root, target, "real", target, 3)
            add_video(root, f"{target}_{source}", "fake", target, 3)


FFPP_PROTOCOL = {"train": [["000", "003"], ["010", "011"], ["120", "121"]],
                 "val": [["953", "974"]], "test": [["519", "515"]]}


def write_ffpp_protocol(folder: Path, protocol: dict[str, list]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in protocol.items():
        (folder / f"{split}.json").write_text(json.dumps(pairs))


def test_official_ffpp_protocol_is_honoured(tmp_path):
    ids = [i for pairs in FFPP_PROTOCOL.values() for pair in pairs for i in pair]
    ffpp_dataset(tmp_path / "pre", ids)
    write_ffpp_protocol(tmp_path / "proto", FFPP_PROTOCOL)
    report = run_split(tmp_path / "pre", tmp_path / "out", protocol=tmp_path / "proto")
    expected = {min(pair): s for s, pairs in FFPP_PROTOCOL.items() for pair in pairs}
    rows = read_table(tmp_path / "out")
    assert {r["group"]: r["split"] for r in rows} == expected
    assert {r["video_id"] for r in rows if r["split"] == "test"} == {
        "519", "515", "519_515", "515_519"}
    assert report["method"] == "protocol" and report["splits"]["train"]["groups"] == 3


def test_protocol_that_splits_one_identity_group_is_refused(tmp_path):
    ffpp_dataset(tmp_path / "pre", ["1", "2", "3", "4", "5", "6"])
    table = tmp_path / "protocol.csv"
    table.write_text("group,split\n1,train\n2,test\n3,val\n4,val\n5,test\n6,test\n")
    with pytest.raises(PipelineError, match="splits the identities of one group "
                                            r"\(1 in train, 2 in test\)"):
        run_split(tmp_path / "pre", tmp_path / "out", protocol=table)


def test_csv_protocol_and_unlisted_groups(tmp_path):
    ffpp_dataset(tmp_path / "pre", ["1", "2", "3", "4", "5", "6", "7", "8"])
    table = tmp_path / "protocol.csv"
    rows = [("1", "train"), ("2", "train"), ("3", "val"), ("4", "val"), ("5", "test"),
            ("6", "test")]
    table.write_text("group,split\n" + "".join(f"{g},{s}\n" for g, s in rows))
    with pytest.raises(PipelineError, match=r"does not list 1 of the 4 groups \(7\)"):
        run_split(tmp_path / "pre", tmp_path / "out", protocol=table)
    assert not (tmp_path / "out").exists()
    report = run_split(tmp_path / "pre", tmp_path / "out", protocol=table, unlisted="drop")
    assert {r["group"]: r["split"] for r in read_table(tmp_path / "out")} == {
        "1": "train", "3": "val", "5": "test"}
    assert report["dropped_unlisted"] == {"groups": 1, "videos": 4, "crops": 12}


def test_bad_protocols_are_refused(tmp_path):
    write_ffpp_protocol(tmp_path / "partial", {"train": [["1", "2"]], "val": [["3", "4"]]})
    with pytest.raises(PipelineError, match="lacks test.json"):
        read_protocol(tmp_path / "partial")
    write_ffpp_protocol(tmp_path / "twice", {"train": [["1", "2"]], "val": [["2", "3"]],
                                             "test": [["5", "6"]]})
    with pytest.raises(PipelineError, match="group 2 in both train and val"):
        read_protocol(tmp_path / "twice")
    (tmp_path / "bad.csv").write_text("group,split\n1,training\n")
    with pytest.raises(PipelineError, match="'training'"):
        read_protocol(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("video,fold\n1,train\n")
    with pytest.raises(PipelineError, match="columns group,split"):
        read_protocol(tmp_path / "cols.csv")


def test_leak_check_refuses_a_group_in_two_splits():
    rows = [{"group": "g1", "video_id": "a", "split": "train"},
            {"group": "g1", "video_id": "b", "split": "test"}]
    with pytest.raises(PipelineError, match="leak: group g1 is in both train and test"):
        check_no_leak(rows)
    assert check_no_leak(rows[:1]) == {"groups_checked": 1, "videos_checked": 1}


def _no_face(root: Path) -> None:
    add_video(root, "a", "real", "a", 0, status="no_face")


def _one_class(root: Path) -> None:
    for g in range(5):
        add_video(root, f"r{g}", "real", f"g{g}", 2)


def _all_fakes_blurred(root: Path) -> None:
    for g in range(5):
        add_video(root, f"r{g}", "real", f"g{g}", 2)
        add_video(root, f"f{g}", "fake", f"g{g}", 2, blurred={0, 1})


def _two_groups(root: Path) -> None:
    for g in range(2):
        add_video(root, f"r{g}", "real", f"g{g}", 2)
        add_video(root, f"f{g}", "fake", f"g{g}", 2)


def _no_manifest(root: Path) -> None:
    write_jpeg(root / "real" / "v" / "000000_00.jpg", 0)


@pytest.mark.parametrize(("build", "message"), [
    (None, "input folder not found"),
    (lambda root: root.mkdir(), "input folder is empty"),
    (_no_manifest, "no manifest.jsonl"),
    (_no_face, "lists no face crops"),
    (_one_class, "no fake videos with faces"),
    (_all_fakes_blurred, "no fake crops left after the quality filter"),
    (_two_groups, "only 2 group"),
])
def test_bad_inputs_give_one_line_and_write_nothing(tmp_path, build, message):
    root = tmp_path / "pre"
    if build is not None:
        build(root)
    with pytest.raises(PipelineError, match=message) as err:
        run_split(root, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["pre"] if build else [])


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    _two_groups(tmp_path / "pre")
    add_video(tmp_path / "pre", "r9", "real", "g9", 2)
    add_video(tmp_path / "pre", "f9", "fake", "g9", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PipelineError, match="already exists: pass --overwrite"):
        run_split(tmp_path / "pre", out)
    assert (out / "keep.txt").exists()
    run_split(tmp_path / "pre", out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "split.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pre"]
    with pytest.raises(PipelineError, match="would contain the input"):
        run_split(tmp_path / "pre", tmp_path, overwrite=True)


def test_cli_writes_split_and_reports_errors_in_one_line(tempting, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(REPO / "split.py"), "--input", str(tempting),
                           "--output", str(out), "--seed", "7", "--max-per-video", "4"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "leak check: passed" in done.stdout and (out / "split.csv").is_file()
    assert json.loads((out / "split_report.json").read_text())["filter"]["max_per_video"] == 4
    bad = subprocess.run([sys.executable, str(REPO / "split.py"), "--input", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: input folder not found: {tmp_path / 'x'} "
        f"(run preprocess.py --output {tmp_path / 'x'})"]


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data")
def test_shared_video_groups_stay_together(tmp_path):
    root = tmp_path / "pre"
    with open(SHARED / "videos" / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rel = row["path"].split("/", 1)[1]
            video_id = f"{Path(rel).stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            add_video(root, video_id, row["label"], row["source_video"], 6)
    for seed in range(5):
        out = tmp_path / f"out{seed}"
        run_split(root, out, seed=seed, workers=2)
        split_of = {r["video_id"].rsplit("-", 1)[0]: r["split"] for r in read_table(out)}
        assert len(split_of) == 11
        assert split_of["519"] == split_of["519_515"]
        assert split_of["004"] == split_of["004_982"]
        assert split_of["634"] == split_of["634_660"]
        assert {s for s in split_of.values()} == set(SPLIT_NAMES)


def test_group_sizes_count_crops_and_videos():
    from dfpipe.split.quality import FaceCrop
    crops = [FaceCrop("a", "real", "v1", "g", 0, 0, 100, 1.0),
             FaceCrop("b", "real", "v1", "g", 5, 0, 100, 1.0),
             FaceCrop("c", "fake", "v2", "g", 0, 0, 100, 1.0)]
    assert group_sizes(crops)["g"].tolist() == [2, 1, 1, 1]


def test_report_carries_the_preprocess_settings_for_the_model(split_out):
    out, report = split_out
    saved = json.loads((out / "split_report.json").read_text())
    assert saved["preprocess"] == {"detector": "mtcnn", **SETTINGS}
    assert report["preprocess"]["margin"] == 1.3


def _filler_groups(root: Path, n: int = 8) -> None:
    for g in range(n):
        add_video(root, f"r{g}", "real", f"g{g}", 3)
        add_video(root, f"f{g}", "fake", f"g{g}", 3)


def test_target_source_and_fake_land_in_one_split_for_every_seed(tmp_path):
    """519_515 shows 515's face: real 515, real 519 and the fake must never be split apart
    (the manifest holds what preprocess wrote before identity groups: group = target)."""
    root = tmp_path / "pre"
    _filler_groups(root)
    add_video(root, "515-aaaa", "real", "515", 3, group_rule="self", relpath="real/515.mp4")
    add_video(root, "519-bbbb", "real", "519", 3, group_rule="self", relpath="real/519.mp4")
    add_video(root, "519_515-cccc", "fake", "519", 3, group_rule="ffpp_name",
              relpath="fake/Deepfakes/519_515.mp4")
    for seed in range(12):
        out = tmp_path / f"out{seed}"
        report = run_split(root, out, seed=seed, workers=1)
        rows = read_table(out)
        split_of = {r["video_id"]: (r["split"], r["group"]) for r in rows}
        assert split_of["515-aaaa"] == split_of["519-bbbb"] == split_of["519_515-cccc"]
        assert split_of["515-aaaa"][1] == "515"
        rules = {r["video_id"]: r["group_rule"] for r in rows}
        assert rules["519_515-cccc"] == "ffpp_name" and rules["515-aaaa"] == "self"
        where = split_of["515-aaaa"][0]
        assert report["group_rules"][where]["ffpp_name"] == 1
        assert sum(sum(c.values()) for c in report["group_rules"].values()) == 19
    assert "videos per group rule" in (out / "split_report.txt").read_text()


def test_ungrouped_fakes_are_refused_unless_labelled_or_allowed(tmp_path):
    root = tmp_path / "pre"
    _filler_groups(root)
    add_video(root, "clip-dddd", "fake", "clip", 3, group_rule="self",
              relpath="fake/other/clip.mp4")
    with pytest.raises(PipelineError, match=r"^1 fake video\(s\) have no known source.*"
                                            "--labels.*--allow-ungrouped-fakes") as err:
        run_split(root, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    allowed = run_split(root, tmp_path / "allowed", allow_ungrouped_fakes=True)
    assert allowed["ungrouped_fakes"] == 1
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,group\nfake/other/clip.mp4,fake,g3|someone\n")
    report = run_split(root, tmp_path / "labelled", labels=labels)
    assert report["ungrouped_fakes"] == 0
    rows = {r["video_id"]: r for r in read_table(tmp_path / "labelled")}
    assert rows["clip-dddd"]["group"] == rows["r3"]["group"] == rows["f3"]["group"]
    assert rows["clip-dddd"]["group_rule"] == "labels_csv"
    assert rows["clip-dddd"]["split"] == rows["r3"]["split"]


def test_dropped_videos_are_listed_per_split_with_their_reason(tmp_path):
    root = tmp_path / "pre"
    _filler_groups(root)
    add_video(root, "nf", "fake", "g1", 0, status="no_face")
    add_video(root, "err", "real", "g2", 0, status="error")
    add_video(root, "blur", "fake", "g3", 2, blurred={0, 1})
    add_video(root, "lonely", "real", "solo", 0, status="no_face")
    report = run_split(root, tmp_path / "out", workers=1)
    rows = read_table(tmp_path / "out")
    split_of = {r["video_id"]: r["split"] for r in rows}
    with open(tmp_path / "out" / "dropped_videos.csv", newline="", encoding="utf-8") as fh:
        dropped = {r["video_id"]: r for r in csv.DictReader(fh)}
    assert set(dropped) == {"nf", "err", "blur", "lonely"}
    assert {k: v["reason"] for k, v in dropped.items()} == {
        "nf": "no_face", "err": "error", "blur": "filtered", "lonely": "no_face"}
    assert dropped["nf"]["split"] == split_of["r1"]  # with the rest of its group
    assert dropped["err"]["split"] == split_of["r2"]
    assert dropped["blur"]["split"] == split_of["r3"]
    assert dropped["lonely"]["split"] in SPLIT_NAMES and dropped["lonely"]["group"] == "solo"
    assert dropped["blur"]["detail"] == "all 2 crops removed by the quality filter"
    counted = sum(sum(c.values()) for c in report["dropped_videos"].values())
    assert counted == 4
    assert "videos without a kept crop" in (tmp_path / "out" / "split_report.txt").read_text()


def test_min_confidence_defaults_to_the_value_preprocess_used(tmp_path):
    root = tmp_path / "pre"
    for g in range(6):
        add_video(root, f"r{g}", "real", f"g{g}", 3, confidences={0: 0.85})
        add_video(root, f"f{g}", "fake", f"g{g}", 3)
    lines = (root / "manifest.jsonl").read_text().replace('"min_confidence": 0.9',
                                                          '"min_confidence": 0.8')
    (root / "manifest.jsonl").write_text(lines)
    report = run_split(root, tmp_path / "out", workers=1)
    assert report["filter"]["min_confidence"] == 0.8
    assert report["filter"]["removed"]["confidence"] == 0
    assert report["filter"]["min_confidence_source"] == "the manifest (preprocess's value)"
    strict = run_split(root, tmp_path / "strict", workers=1,
                       rules=QualityRules(min_confidence=0.9))
    assert strict["filter"]["removed"]["confidence"] == 6


def test_crop_settings_given_to_split_fill_what_the_manifest_lacks(tmp_path):
    root = tmp_path / "pre"
    _filler_groups(root)
    bare = "\n".join(json.dumps({k: v for k, v in json.loads(line).items()
                                 if k not in ("settings", "detector")})
                     for line in (root / "manifest.jsonl").read_text().splitlines()) + "\n"
    (root / "manifest.jsonl").write_text(bare)
    unknown = run_split(root, tmp_path / "unknown", workers=1)
    assert unknown["preprocess"] is None and unknown["crop_source"] is None
    known = run_split(root, tmp_path / "known", workers=1,
                      crop={"margin": 1.0, "size": 24, "detector": None})
    assert known["preprocess"] == {"margin": 1.0, "size": 24}
    assert known["crop_source"] == "split.py options"
    with pytest.raises(PipelineError, match="--margin 1.0 contradicts the manifest"):
        run_split(tempting_root(tmp_path), tmp_path / "x", crop={"margin": 1.0})


def tempting_root(tmp_path: Path) -> Path:
    root = tmp_path / "with_settings"
    _filler_groups(root)
    return root


def test_quality_rules_of_a_split_travel_to_the_model_metadata(split_out, tmp_path):
    from dfpipe.core.splittable import quality_rules, read_split_report
    from dfpipe.split.quality import rules_of

    out, report = split_out
    rules = quality_rules(read_split_report(out))
    assert rules == {"min_face": 40, "min_sharpness": 20.0, "min_confidence": 0.9,
                     "max_per_video": None, "source": "split_report.json of the training split"}
    assert rules_of({"quality": rules}) == QualityRules(min_confidence=0.9)
    assert quality_rules(read_split_report(tmp_path)) is None and rules_of({}) is None

"""Small copies of the benchmarks' own layouts, built from the shared real clips by symlink.

Each builder lays the clips out under the dataset's real folder and file names, with the
dataset's real list/metadata format, so the layout and protocol code meets what a
researcher unpacks.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SHARED_DATA

from dfpipe.extract import faces as facelib

CLIPS = SHARED_DATA / "videos"
FFPP_FAKES = {"Deepfakes": "519_515", "FaceSwap": "634_660", "Face2Face": "750_743",
              "NeuralTextures": "004_982"}


def link(clip: str, dst: Path) -> Path:
    """``dst`` pointing at the shared clip ``clip`` (``real/004.mp4``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(CLIPS / clip)
    return dst


def build_ffpp(root: Path, compression: str = "c23") -> Path:
    """FaceForensics++ with DFD: youtube originals, four methods, actors, masks to skip, and
    the official split json files in ``root/splits``."""
    for vid in ("004", "519", "634"):
        link(f"real/{vid}.mp4", root / f"original_sequences/youtube/{compression}/videos/{vid}.mp4")
    for method, name in FFPP_FAKES.items():
        link(f"fake/{name}.mp4",
             root / f"manipulated_sequences/{method}/{compression}/videos/{name}.mp4")
    link("fake/519_515.mp4", root / "manipulated_sequences/Deepfakes/masks/videos/519_515.mp4")
    link("real/lynaeydofd.mp4",
         root / f"original_sequences/actors/{compression}/videos/01__talking_angry.mp4")
    link("fake/brtujopkby.mp4", root / f"manipulated_sequences/DeepFakeDetection/{compression}/"
                                       "videos/01_02__talking_angry__YVGY8LOK.mp4")
    splits = root / "splits"
    splits.mkdir()
    for split, pairs in {"train": [["004", "982"]], "val": [["519", "515"]],
                         "test": [["634", "660"], ["750", "743"]]}.items():
        (splits / f"{split}.json").write_text(json.dumps(pairs))
    return root


CELEBDF = {"Celeb-real/id0_0000.mp4": "real/004.mp4", "Celeb-real/id1_0000.mp4": "real/519.mp4",
           "Celeb-real/id2_0000.mp4": "real/lynaeydofd.mp4",
           "YouTube-real/00000.mp4": "real/634.mp4",
           "Celeb-synthesis/id0_id1_0000.mp4": "fake/519_515.mp4",
           "Celeb-synthesis/id1_id0_0000.mp4": "fake/634_660.mp4",
           "Celeb-synthesis/id0_id2_0001.mp4": "fake/004_982.mp4",
           "Celeb-synthesis/id2_id1_0000.mp4": "fake/750_743.mp4",
           "Celeb-synthesis/id1_id2_0001.mp4": "fake/brtujopkby.mp4"}
CELEBDF_TEST = ["1 YouTube-real/00000.mp4", "1 Celeb-real/id2_0000.mp4",
                "0 Celeb-synthesis/id1_id0_0000.mp4", "0 Celeb-synthesis/id2_id1_0000.mp4"]


def build_celebdf(root: Path) -> Path:
    """Celeb-DF-v2: Celeb-real, YouTube-real, Celeb-synthesis and the official test list."""
    for rel, clip in CELEBDF.items():
        link(clip, root / rel)
    (root / "List_of_testing_videos.txt").write_text("\n".join(CELEBDF_TEST) + "\n")
    return root


def build_dfdc(root: Path) -> Path:
    """A DFDC training part: the clips under their own names with their metadata.json."""
    part = root / "dfdc_train_part_0"
    meta = {"lynaeydofd.mp4": {"label": "REAL", "split": "train", "original": None}}
    for name, original in (("brtujopkby", "gnmmhlbzge"), ("widuwuoiur", "ybqmttnept"),
                           ("yhffcuhhjy", "wdpsifpppf")):
        link(f"fake/{name}.mp4", part / f"{name}.mp4")
        meta[f"{name}.mp4"] = {"label": "FAKE", "split": "train", "original": f"{original}.mp4"}
    link("real/lynaeydofd.mp4", part / "lynaeydofd.mp4")
    (part / "metadata.json").write_text(json.dumps(meta))
    return root


def build_dfdc_test(root: Path) -> Path:
    """The DFDC test set as released: the videos and labels.csv (filename,label; 1 = fake)."""
    lines = ["filename,label"]
    for clip, label in (("real/lynaeydofd.mp4", 0), ("fake/brtujopkby.mp4", 1),
                        ("fake/widuwuoiur.mp4", 1), ("fake/yhffcuhhjy.mp4", 1)):
        name = Path(clip).name
        link(clip, root / name)
        lines.append(f"{name},{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


DFDCP = {"original_videos/1255229/1255229_A_001.mp4": ("real/004.mp4", "real", "train"),
         "original_videos/1260311/1260311_B_002.mp4": ("real/519.mp4", "real", "train"),
         "original_videos/1300000/1300000_A_003.mp4": ("real/634.mp4", "real", "test"),
         "method_A/1255229/1255229_1260311_A/1255229_1260311_A_001.mp4":
             ("fake/004_982.mp4", "fake", "train"),
         "method_B/1260311/1260311_1255229_B/1260311_1255229_B_002.mp4":
             ("fake/519_515.mp4", "fake", "train"),
         "method_A/1300000/1300000_1255229_A/1300000_1255229_A_003.mp4":
             ("fake/634_660.mp4", "fake", "test")}


def build_dfdcp(root: Path) -> Path:
    """The DFDC preview: original_videos/ and method_A|B/ with the root's dataset.json."""
    index = {}
    for rel, (clip, label, split) in DFDCP.items():
        link(clip, root / rel)
        index[rel] = {"label": label, "set": split, "augmentations": {}}
    (root / "dataset.json").write_text(json.dumps(index))
    return root


class CentreDetector(facelib.Detector):
    """A stand-in detector: one face in the middle of each frame (fast, no model)."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence

    def detect(self, frames):
        return [[facelib.Face((f.shape[1] * .3, f.shape[0] * .3, f.shape[1] * .6,
                               f.shape[0] * .6), 0.99)] for f in frames]


def preprocess_fast(root: Path, out: Path) -> Path:
    """preprocess.py's run on ``root`` with the centre detector, two frames per video."""
    from dfpipe.extract.run import Settings, run

    facelib.DETECTORS.setdefault("centre", facelib.DetectorSpec(CentreDetector,
                                                                {"min_confidence": 0.5}, 4))
    run(root, out, Settings(detector="centre", frames=2, size=48), max_frames=12)
    return out

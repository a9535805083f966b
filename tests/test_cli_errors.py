"""Every stage script over a matrix of bad inputs, as a user runs it (a subprocess): one
``error:`` line on stderr naming the problem, exit code 2 for bad input (1 for a failed run),
never a traceback; ``--debug`` shows the traceback."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from app_support import save_tiny_model
from conftest import REPO

from dfpipe.core.errors import USAGE

NOBODY = 65534


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """One folder of bad inputs (and a good model and split to put them beside)."""
    import cv2

    root = tmp_path_factory.mktemp("bad")
    good = save_tiny_model(root / "good.h5")
    data = good.read_bytes()
    (root / "trunc.h5").write_bytes(data[: len(data) // 2])
    (root / "text.h5").write_text("not a model\n")
    (root / "empty.h5").write_bytes(b"")
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(root / "other.h5")  # a Keras model, not a detector written by train.py
    for label in ("real", "fake"):
        crop = root / "split" / "test" / label / f"{label}_video" / "0000_0.jpg"
        crop.parent.mkdir(parents=True)
        cv2.imwrite(str(crop), np.full((64, 64, 3), 120, np.uint8))
    (root / "manifest").mkdir()
    (root / "manifest" / "manifest.jsonl").write_text('{"video": "real/a.mp4", "sta\n')
    (root / "empty.csv").write_text("")
    (root / "videos").mkdir()
    (root / "videos" / "clip.mp4").write_text("a text file named .mp4\n")
    return root


def run(args: list[str], user: int | None = None, cwd: Path = REPO,
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    prefix: list[str] = []
    if user is not None:
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        env.update(HOME=str(cwd), MPLCONFIGDIR=str(cwd))
    return subprocess.run([*prefix, sys.executable, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180, env=env)


def script(name: str) -> str:
    return str(REPO / name)


def assert_one_error_line(result: subprocess.CompletedProcess, code: int,
                          *words: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


Case = Callable[[Path], list[str]]
CASES: list[tuple[str, Case, int, tuple[str, ...]]] = [
    ("preprocess-missing-input", lambda d: [script("preprocess.py"), "--input",
     str(d / "nothere"), "--output", str(d / "pp"), "--detector", "mtcnn"], USAGE, ("nothere",)),
    ("preprocess-file-for-folder", lambda d: [script("preprocess.py"), "--input",
     str(d / "text.h5"), "--output", str(d / "pp"), "--detector", "mtcnn"], USAGE, ("text.h5",)),
    ("preprocess-empty-labels", lambda d: [script("preprocess.py"), "--input", str(d / "split"
     / "test"), "--output", str(d / "pp"), "--labels", str(d / "empty.csv"), "--detector",
     "mtcnn"], USAGE, ("empty.csv",)),
    ("split-missing-input", lambda d: [script("split.py"), "--input", str(d / "nothere"),
     "--output", str(d / "sp")], USAGE, ("nothere",)),
    ("split-corrupt-manifest-line", lambda d: [script("split.py"), "--input",
     str(d / "manifest"), "--output", str(d / "sp")], USAGE, ("manifest",)),
    ("train-file-for-folder", lambda d: [script("train.py"), "--data", str(d / "text.h5"),
     "--output", str(d / "tr")], USAGE, ("text.h5",)),
    ("evaluate-truncated-h5", lambda d: [script("evaluate.py"), "--model", str(d / "trunc.h5"),
     "--data", str(d / "split"), "--output", str(d / "ev")], USAGE, ("trunc.h5", "truncated")),
    ("evaluate-text-named-h5", lambda d: [script("evaluate.py"), "--model", str(d / "text.h5"),
     "--data", str(d / "split"), "--output", str(d / "ev")], USAGE, ("text.h5",)),
    ("evaluate-empty-h5", lambda d: [script("evaluate.py"), "--model", str(d / "empty.h5"),
     "--data", str(d / "split"), "--output", str(d / "ev")], USAGE, ("empty.h5",)),
    ("evaluate-model-of-another-kind", lambda d: [script("evaluate.py"), "--model",
     str(d / "other.h5"), "--data", str(d / "split"), "--output", str(d / "ev")], USAGE,
     ("other.h5", "train.py")),
    ("evaluate-folder-for-model", lambda d: [script("evaluate.py"), "--model", str(d / "split"),
     "--data", str(d / "split"), "--output", str(d / "ev")], USAGE, ("split is a folder",)),
    ("predict-truncated-h5", lambda d: [script("app.py"), "predict", str(d / "videos"),
     "--model", str(d / "trunc.h5"), "--out", str(d / "r.csv")], USAGE, ("trunc.h5",)),
    ("predict-missing-input", lambda d: [script("app.py"), "predict", str(d / "nothere.mp4"),
     "--model", str(d / "good.h5"), "--out", str(d / "r.csv")], USAGE, ("nothere.mp4",)),
    ("predict-folder-for-out", lambda d: [script("app.py"), "predict", str(d / "videos"),
     "--model", str(d / "good.h5"), "--out", str(d / "videos")], USAGE, ("--out",)),
    ("serve-model-of-another-kind", lambda d: [script("app.py"), "serve", "--model",
     str(d / "other.h5"), "--instance", str(d / "inst"), "--port", str(free_port())], USAGE,
     ("other.h5",)),
    ("monitor-file-for-folder", lambda d: [script("monitor.py"), str(d / "empty.csv"),
     "--once"], USAGE, ("empty.csv",)),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_an_exit_code(bad, args, code, words):
    assert_one_error_line(run(args(bad)), code, *words)


def test_debug_shows_the_traceback(bad):
    result = run([script("evaluate.py"), "--model", str(bad / "trunc.h5"), "--data",
                  str(bad / "split"), "--output", str(bad / "ev"), "--debug"])
    assert result.returncode == USAGE and "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_an_unforeseen_path_problem_is_one_line(bad, tmp_path):
    """A failure no check of the script foresaw (the output folder's parent is a file) still
    gives one line naming the path, and the way to the traceback."""
    (tmp_path / "out").write_text("a file where the report folder goes")
    result = run([script("evaluate.py"), "--model", str(bad / "good.h5"), "--data",
                  str(bad / "split"), "--output", str(tmp_path / "out" / "ev")])
    line = assert_one_error_line(result, USAGE, str(tmp_path / "out"))
    assert "--debug" in line


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                    reason="root reads every file, and setpriv is absent to run as another user")
def test_unreadable_model_is_one_line(bad):
    folder = Path(tempfile.mkdtemp(prefix="dfpipe-unreadable-"))
    try:
        folder.chmod(0o777)
        shutil.copy(bad / "good.h5", folder / "locked.h5")
        shutil.copytree(bad / "split", folder / "split")
        (folder / "locked.h5").chmod(0o000 if os.geteuid() != 0 else 0o600)
        user = NOBODY if os.geteuid() == 0 else None
        result = run([script("evaluate.py"), "--model", str(folder / "locked.h5"), "--data",
                      str(folder / "split"), "--output", str(folder / "ev")], user=user,
                     cwd=folder)
        assert_one_error_line(result, USAGE, "locked.h5", "ermission")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_predict_gives_a_text_file_named_mp4_an_error_row(bad, tmp_path):
    out = tmp_path / "r.csv"
    result = run([script("app.py"), "predict", str(bad / "videos"), "--model",
                  str(bad / "good.h5"), "--out", str(out)])
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr
    row, = csv.DictReader(open(out, newline=""))
    assert row["path"].endswith("clip.mp4") and row["status"] == "error" and row["error"]

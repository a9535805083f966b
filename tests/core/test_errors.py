"""run_cli: one line and an exit code for every failure, the traceback only with --debug."""

from __future__ import annotations

import pytest

from dfpipe.core.errors import FAILED, USAGE, PipelineError, RunFailed, describe, run_cli


def failing(exc: BaseException):
    def main() -> int:
        raise exc

    return main


@pytest.mark.parametrize(("exc", "code", "words"), [
    (PipelineError("model file not found: x.h5\n(train one)"), USAGE, "model file not found"),
    (RunFailed("the device was lost"), FAILED, "the device was lost"),
    (FileNotFoundError(2, "No such file or directory", "gone.csv"), USAGE, "cannot use gone.csv"),
    (IsADirectoryError(21, "Is a directory", "folder"), USAGE, "folder: Is a directory"),
    (PermissionError("[Errno 13] Unable to open file"), USAGE, "permission denied"),
    (ValueError("a bug\nsecond line"), FAILED, "ValueError: a bug"),
])
def test_one_line_and_the_exit_code(exc, code, words, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["script.py"])
    with pytest.raises(SystemExit) as exit_:
        run_cli(failing(exc))
    assert exit_.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["script.py", "--debug"])
    with pytest.raises(SystemExit) as exit_:
        run_cli(failing(ValueError("a bug")))
    err = capsys.readouterr().err
    assert exit_.value.code == FAILED and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("error: ValueError: a bug")


def test_success_and_interruption(monkeypatch):
    monkeypatch.setattr("sys.argv", ["script.py"])
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: 0)
    assert exit_.value.code == 0
    with pytest.raises(SystemExit) as exit_:
        run_cli(failing(KeyboardInterrupt()))
    assert exit_.value.code == 130


def test_describe_names_the_file():
    assert describe(OSError(28, "No space left on device", "out.csv")) == (
        "cannot use out.csv: No space left on device")

"""Training survives a kill: committed state, resume in the same phase and epoch, --restart."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from split_support import write_split

from dfpipe.core.errors import PipelineError
from dfpipe.models.build import build_backbone
from dfpipe.models.registry import get_backbone
from dfpipe.models.saving import load_classifier
from dfpipe.train import loop as training
from dfpipe.train.config import TrainConfig
from dfpipe.train.loop import train
from dfpipe.train.resume import RESUME_DIR, RunBackup, RunState

LOG_COLUMNS = ["loss", "auc", "accuracy", "val_loss", "val_auc", "val_accuracy", "lr"]


class Killed(Exception):
    """Stands for the process dying."""


def _setup(tmp_path: Path) -> TrainConfig:
    root = write_split(tmp_path / "split", {"train": {"real": 4, "fake": 4},
                                            "val": {"real": 2, "fake": 2}}, size=16)
    weights = tmp_path / "tiny_backbone.weights.h5"
    build_backbone(get_backbone("tiny"), 16, None).save_weights(weights)
    return TrainConfig(data=root, output=tmp_path / "m", backbone="tiny", weights=str(weights),
                       size=16, batch_size=4, head_epochs=2, epochs=3, schedule="cosine",
                       patience=10, precision="float32")


def _kill_at_epoch_commit(monkeypatch, number: int) -> None:
    """Die while epoch ``number`` (counted from 1) is being committed, before it is."""
    commit, seen = RunBackup.commit, []

    def dying(self, state, model=None, is_best=False):
        if model is not None:
            seen.append(state.epoch)
            if len(seen) == number:
                raise Killed
        return commit(self, state, model, is_best)

    monkeypatch.setattr(RunBackup, "commit", dying)


def _count_fits(monkeypatch) -> list[int]:
    calls: list[int] = []
    run_phase = training._Run._phase

    def counting(self, model, phase, state):
        if "fit" not in vars(model):  # once per model, not per phase
            fit = model.fit

            def counted_fit(*args, **kwargs):
                calls.append(kwargs["initial_epoch"])
                return fit(*args, **kwargs)

            model.fit = counted_fit
        return run_phase(self, model, phase, state)

    monkeypatch.setattr(training._Run, "_phase", counting)
    return calls


def test_killed_run_resumes_in_the_same_phase_and_epoch(tmp_path: Path, monkeypatch) -> None:
    cfg = _setup(tmp_path)
    whole = train(replace(cfg, output=tmp_path / "whole"), verbose=0)
    expected = pd.read_csv(tmp_path / "whole" / "training_log.csv")

    with monkeypatch.context() as m:
        _kill_at_epoch_commit(m, 4)  # epoch 3: the second of the fine-tuning phase
        with pytest.raises(Killed):
            train(cfg, verbose=0)
    before = pd.read_csv(cfg.output / "training_log.csv")
    assert list(before["epoch"]) == [0, 1, 2]
    state = json.loads((cfg.output / RESUME_DIR / "state.json").read_text())
    assert (state["phase"], state["epoch"], state["phase_starts"]) == (1, 3, [0, 2])

    fits = _count_fits(monkeypatch)
    resumed = train(cfg, verbose=0)
    assert resumed.resumed and fits == [3, 4]  # epoch 3 again (it was not committed), then 4
    log = pd.read_csv(cfg.output / "training_log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3, 4]  # no epoch twice, none lost
    pd.testing.assert_frame_equal(log.iloc[:3], before)
    # the same run as one never killed: phase, learning rate (optimizer step count), metrics
    np.testing.assert_allclose(log[LOG_COLUMNS], expected[LOG_COLUMNS], rtol=1e-4, atol=1e-5)
    meta = resumed.metadata["training"]
    assert meta["best_epoch"] == whole.metadata["training"]["best_epoch"]
    assert meta["best_epoch"] == int(log["epoch"][log["val_auc"].idxmax()])
    assert [p["first_epoch"] for p in meta["phases"]] == [0, 2]
    np.testing.assert_allclose(resumed.val_scores, whole.val_scores, rtol=1e-4, atol=1e-5)
    assert not (cfg.output / RESUME_DIR).exists()  # removed once the model is saved


def test_best_checkpoint_from_before_the_kill_is_kept(tmp_path: Path, monkeypatch) -> None:
    cfg = replace(_setup(tmp_path), head_epochs=1, epochs=2)
    with monkeypatch.context() as m:
        _kill_at_epoch_commit(m, 3)
        with pytest.raises(Killed):
            train(cfg, verbose=0)
    folder = cfg.output / RESUME_DIR
    state = RunState(**json.loads((folder / "state.json").read_text()))
    best_before = (folder / state.best_file).read_bytes()
    aucs = {row["epoch"]: row["val_auc"] for row in state.history}

    def never_better(self, epoch, logs, *args, **kwargs):
        logs = {**logs, "val_auc": -1.0}  # the epochs after the kill do not improve
        return record(self, epoch, logs, *args, **kwargs)

    record = RunState.record
    monkeypatch.setattr(RunState, "record", never_better)
    result = train(cfg, verbose=0)
    assert result.metadata["training"]["best_epoch"] == state.best_epoch
    assert aucs[state.best_epoch] == max(aucs.values())
    kept = tmp_path / "kept.weights.h5"
    kept.write_bytes(best_before)
    model, _ = load_classifier(result.model_path)
    reference = training.build_classifier(get_backbone("tiny"), 16, None, cfg.dropout or 0.2)
    reference.load_weights(kept)
    for a, b in zip(model.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kill_while_saving_resumes_without_training_again(tmp_path: Path, monkeypatch) -> None:
    cfg = _setup(tmp_path)
    def dies(*args, **kwargs) -> None:
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(training, "save_model", dies)
        with pytest.raises(Killed):
            train(cfg, verbose=0)
    fits = _count_fits(monkeypatch)
    result = train(cfg, verbose=0)
    assert fits == [] and result.resumed and result.model_path.is_file()
    assert list(pd.read_csv(cfg.output / "training_log.csv")["epoch"]) == [0, 1, 2, 3, 4]


def test_restart_starts_over_and_other_options_are_refused(tmp_path: Path,
                                                           monkeypatch) -> None:
    cfg = _setup(tmp_path)
    with monkeypatch.context() as m:
        _kill_at_epoch_commit(m, 2)
        with pytest.raises(Killed):
            train(cfg, verbose=0)
    with pytest.raises(PipelineError, match=r"unfinished run with other options \(epochs "
                                            r"differ\).*--restart") as err:
        train(replace(cfg, epochs=4), verbose=0)
    assert "\n" not in str(err.value)
    fits = _count_fits(monkeypatch)
    result = train(replace(cfg, epochs=4, restart=True), verbose=0)
    assert not result.resumed and fits == [0, 1, 2, 3, 4, 5]
    assert list(pd.read_csv(cfg.output / "training_log.csv")["epoch"]) == list(range(6))


def test_early_stopping_and_plateau_counters() -> None:
    state = RunState(config={}, lr=1e-3)
    aucs = [0.6, 0.7, 0.65, 0.66, 0.7, 0.69]
    best = [state.record(e, {"val_auc": a}, patience=4, lr_patience=2) for e, a in
            enumerate(aucs)]
    assert best == [True, True, False, False, False, False]
    assert (state.best_epoch, state.wait, state.stopped) == (1, 4, True)
    assert state.lr == pytest.approx(1e-3 * 0.3 * 0.3)  # cut after 2, and again after 4
    nan = RunState(config={})
    assert not nan.record(0, {"val_auc": float("nan")}, patience=1)
    assert nan.stopped and nan.best_epoch is None


@pytest.mark.slow
def test_sigkill_mid_training_then_the_same_command_continues(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    out = tmp_path / "m"
    command = [sys.executable, str(REPO / "train.py"), "--data", str(cfg.data), "--output",
               str(out), "--backbone", "tiny", "--weights", str(cfg.weights), "--size", "16",
               "--batch-size", "4", "--head-epochs", "2", "--epochs", "6", "--schedule",
               "cosine", "--patience", "10", "--precision", "float32"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    state_file = out / RESUME_DIR / "state.json"
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file() and len(json.loads(state_file.read_text())["history"]) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    time.sleep(0.3)  # somewhere inside the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    state = json.loads(state_file.read_text())
    done = len(state["history"])
    assert 3 <= done < 8
    before = pd.read_csv(out / "training_log.csv")
    assert list(before["epoch"]) == list(range(done))

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(resumed)" in again.stdout
    log = pd.read_csv(out / "training_log.csv")
    assert list(log["epoch"]) == list(range(8))
    pd.testing.assert_frame_equal(log.iloc[:done], before)
    meta = json.loads((out / "tiny_best.json").read_text())
    assert meta["training"]["resumed"] and meta["training"]["epochs_run"] == 8
    assert meta["training"]["best_epoch"] == int(log["epoch"][log["val_auc"].idxmax()])
    assert not (out / RESUME_DIR).exists()

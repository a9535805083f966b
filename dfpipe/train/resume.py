"""What a training run needs to continue after a kill, committed atomically after every epoch.

Keras' BackupAndRestore covers one ``fit`` call; a run here is two phases (head, then
fine-tuning) with early stopping, learning-rate cuts and a best checkpoint that span epochs,
so the whole of it is kept in one state file: the phase and next epoch, the early-stopping and
plateau counters, the learning rate, the per-epoch logs, and the names of two weight files
(the last epoch's, with the optimizer, and the best epoch's). Each epoch's weights go to a new
file first; ``state.json`` is then replaced in one step, which is the commit; files it no
longer names are deleted. A kill at any moment leaves the last committed epoch intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError

log = logging.getLogger(__name__)

RESUME_DIR = ".resume"
STATE_FILE = "state.json"


@dataclass
class RunState:
    """Where a run is: ``epoch`` is the next one to train, in phase number ``phase``."""

    config: dict[str, Any]
    phase: int = 0
    epoch: int = 0
    weights: str | None = None  # end of the last epoch (model + optimizer)
    best_file: str | None = None
    best_auc: float | None = None
    best_epoch: int | None = None
    phase_best: float | None = None  # early-stopping reference within the phase
    wait: int = 0  # epochs since phase_best last improved
    lr: float | None = None  # plateau schedule's current rate
    lr_wait: int = 0
    stopped: bool = False  # early stopping ended the phase
    finished: bool = False  # every phase done: only the saving is left
    phase_starts: list[int] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, epoch: int, logs: dict[str, float], patience: int,
               lr_patience: int | None = None, lr_factor: float = 0.3,
               min_lr: float = 1e-7) -> bool:
        """Count epoch ``epoch``'s validation AUC: early stopping after ``patience`` epochs
        without a better one in the phase; with ``lr_patience`` (plateau schedule), the rate
        cut by ``lr_factor`` after that many. Return whether it is the best of the run."""
        auc = logs.get("val_auc")
        self.history.append({"epoch": epoch, **logs})
        self.epoch = epoch + 1
        finite = auc is not None and auc == auc  # NaN never improves
        if finite and (self.phase_best is None or auc > self.phase_best):
            self.phase_best, self.wait, self.lr_wait = auc, 0, 0
        else:
            self.wait += 1
            self.lr_wait += 1
            self.stopped = self.wait >= patience
            if lr_patience and self.lr is not None and self.lr_wait >= lr_patience:
                self.lr, self.lr_wait = max(self.lr * lr_factor, min_lr), 0
        best = finite and (self.best_auc is None or auc > self.best_auc)
        if best:
            self.best_auc, self.best_epoch = auc, epoch
        return best

    def in_phase(self) -> bool:
        """Whether the current phase has committed epochs (resume restores the optimizer)."""
        return len(self.phase_starts) > self.phase and self.epoch > self.phase_starts[self.phase]

    def next_phase(self) -> None:
        """Close the phase: the next starts from the best weights with fresh counters."""
        self.phase += 1
        self.phase_best, self.wait, self.lr, self.lr_wait, self.stopped = None, 0, None, 0, False


class RunBackup:
    """The resume folder of one output folder; ``identity`` is the run's resolved options."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.identity = identity

    @property
    def state_path(self) -> Path:
        return self.folder / STATE_FILE

    def start(self, restart: bool) -> tuple[RunState, bool]:
        """The committed state to continue from, or a fresh one; (state, resumed).

        A backup left by a run with other options is refused in one line unless ``restart``.
        """
        if restart and self.folder.exists():
            log.info("--restart: removing the unfinished run's backup %s", self.folder)
            shutil.rmtree(self.folder)
        state = self.load()
        if state is None:
            return RunState(config=self.identity), False
        if state.config != self.identity:
            changed = sorted(k for k in set(state.config) | set(self.identity)
                             if state.config.get(k) != self.identity.get(k))
            raise PipelineError(
                f"{self.folder.parent} holds an unfinished run with other options "
                f"({', '.join(changed)} differ): run the same command again to resume it, "
                "or add --restart to start over")
        self._remove_unnamed(state)
        log.info("resuming: phase %d, epoch %d (%d epochs logged)", state.phase, state.epoch,
                 len(state.history))
        return state, True

    def load(self) -> RunState | None:
        """The committed state, or None when there is none."""
        if not self.state_path.is_file():
            return None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(RunState)}
            return RunState(**{k: v for k, v in data.items() if k in known})
        except (json.JSONDecodeError, TypeError) as exc:
            raise PipelineError(f"{self.state_path} is unreadable ({exc}): add --restart to "
                                "start over") from None

    def weights_path(self, name: str | None) -> Path | None:
        return None if name is None else self.folder / name

    def commit(self, state: RunState, model: Any = None, is_best: bool = False) -> None:
        """Save the epoch's weights (when ``model``) under a new name, then the state in one
        atomic replace; then delete the files the state no longer names."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if model is not None:
            name = f"epoch-{state.epoch - 1:04d}.weights.h5"
            tmp = self.folder / f"tmp-{name}"
            model.save_weights(tmp)
            os.replace(tmp, self.folder / name)
            state.weights = name
            if is_best:
                state.best_file = name
        tmp_state = self.folder / f".{STATE_FILE}.tmp"
        tmp_state.write_text(json.dumps(asdict(state), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_state, self.state_path)
        self._remove_unnamed(state)

    def clear(self) -> None:
        """Remove the backup: only once the model is saved."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _remove_unnamed(self, state: RunState) -> None:
        keep = {STATE_FILE, state.weights, state.best_file}
        for path in self.folder.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

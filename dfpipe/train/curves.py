"""The training curves: one panel per metric logged for both training and validation, by
epoch, with the epoch where fine-tuning started marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dfpipe.core.atomic import atomic_path
from dfpipe.core.errors import PipelineError
from dfpipe.core.traininglog import read_training_log

matplotlib.use("Agg")
DPI = 120


def training_curves(log_path: Path, path: Path, title: str = "Training curves",
                    fine_tune_epoch: int = 0) -> Path:
    """Draw the log at ``log_path`` as a PNG at ``path`` (see :func:`curves_figure`)."""
    fig = curves_figure(read_training_log(log_path), title, fine_tune_epoch, log_path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def curves_figure(columns: dict[str, list[float]], title: str = "Training curves",
                  fine_tune_epoch: int = 0, source: Path | str = "the log") -> Figure:
    """One panel per metric logged for both train and validation (loss, auc, ...) by epoch,
    and the learning rate.

    ``fine_tune_epoch`` > 0 marks where the backbone was unfrozen (after that many epochs).
    """
    names = [k for k in columns if not k.startswith("val_") and f"val_{k}" in columns]
    names = sorted(names, key=lambda k: (k != "loss", k))
    if "lr" in columns or "learning_rate" in columns:
        names.append("lr" if "lr" in columns else "learning_rate")
    if not names:
        raise PipelineError(f"{source} has no metric logged for both training and validation")
    epochs = np.asarray(columns["epoch"]) + 1
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        if f"val_{name}" in columns:
            ax.plot(epochs, columns[name], marker="o", label="train")
            ax.plot(epochs, columns[f"val_{name}"], marker="o", label="validation")
        else:
            ax.plot(epochs, columns[name], marker="o", color="tab:grey")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        if 0 < fine_tune_epoch < len(epochs):
            ax.axvline(fine_tune_epoch + 0.5, color="grey", ls=":", label="fine-tuning starts")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig

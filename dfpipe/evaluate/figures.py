"""Figures: confusion matrices, ROC, PR, score histograms, reliability, training curves.

Each function draws one titled, labelled PNG and writes it atomically. Figures are built
with matplotlib's object API (no pyplot state), so this runs headless and in threads.
Shared by training (its curves) and evaluation; it depends on no pipeline stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn import metrics as skm

from dfpipe.core.atomic import atomic_path
from dfpipe.core.labels import CLASS_NAMES, FAKE, REAL

matplotlib.use("Agg")
log = logging.getLogger(__name__)

DPI = 120
LEVEL_COLORS = {"crops": "tab:blue", "videos": "tab:orange"}
CLASS_COLORS = {REAL: "tab:green", FAKE: "tab:red"}


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG via a temporary file, so a reader never sees half an image."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def confusion_matrix(cm: np.ndarray, path: Path, title: str, percent: bool = False) -> Path:
    """A 2x2 heatmap, rows true class, columns predicted; ``percent`` of each true class."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm * 100.0, rows, out=np.zeros_like(cm), where=rows > 0)
    if percent:
        values = share
        text = [[f"{share[i, j]:.1f}%\n(n={int(cm[i, j])})" for j in range(2)] for i in range(2)]
        bar_label = "percent of true class"
    else:
        values = cm
        text = [[f"{int(cm[i, j])}\n({share[i, j]:.1f}%)" for j in range(2)] for i in range(2)]
        bar_label = "count"
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(values, annot=np.array(text), fmt="", cmap="Blues", ax=ax, cbar=True,
                vmin=0, vmax=100 if percent else None, square=True, linewidths=1,
                linecolor="white", annot_kws={"fontsize": 12},
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
                cbar_kws={"label": bar_label})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return save(fig, path)


def roc_curves(levels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path,
               title: str = "ROC curve (fake = positive)") -> Path:
    """ROC curves of several levels (crops, videos) on one chart, AUC in the legend."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    for level, (y, s) in levels.items():
        fpr, tpr, _ = skm.roc_curve(y, s, pos_label=FAKE)
        auc = skm.roc_auc_score(y, s)
        ax.plot(fpr, tpr, color=LEVEL_COLORS.get(level), lw=2,
                label=f"{level} (AUC {auc:.3f}, n={len(y)})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return save(fig, path)


def pr_curves(levels: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path,
              title: str = "Precision-recall curve (fake = positive)") -> Path:
    """Precision-recall curves per level with average precision and the chance baseline."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    for level, (y, s) in levels.items():
        precision, recall, _ = skm.precision_recall_curve(y, s, pos_label=FAKE)
        ap = skm.average_precision_score(y, s, pos_label=FAKE)
        color = LEVEL_COLORS.get(level)
        ax.step(recall, precision, where="post", color=color, lw=2,
                label=f"{level} (AP {ap:.3f}, n={len(y)})")
        ax.axhline(float(np.mean(y)), ls=":", color=color, lw=1,
                   label=f"{level} chance (share fake {np.mean(y):.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall (share of fakes caught)")
    ax.set_ylabel("precision (share of 'fake' calls that are fake)")
    ax.set_title(title)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return save(fig, path)


def score_histograms(levels: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     threshold: float | Mapping[str, float], path: Path, bins: int = 20) -> Path:
    """P(fake) histograms per true class, one panel per level, its threshold marked (one
    for all levels, or one per level)."""
    fig = Figure(figsize=(5.2 * len(levels), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(levels)))
    edges = np.linspace(0, 1, bins + 1)
    for ax, (level, (y, s)) in zip(axes, levels.items(), strict=True):
        y, s = np.asarray(y), np.asarray(s)
        for cls in (REAL, FAKE):
            color = CLASS_COLORS[cls]
            ax.hist(s[y == cls], bins=edges, histtype="stepfilled", alpha=0.25, color=color)
            ax.hist(s[y == cls], bins=edges, histtype="step", lw=2, color=color,
                    label=f"{CLASS_NAMES[cls]} (n={int((y == cls).sum())})")
        cut = threshold[level] if isinstance(threshold, Mapping) else threshold
        ax.axvline(cut, color="black", ls="--", lw=1.5, label=f"threshold {cut:.3f}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("score P(fake)")
        ax.set_ylabel(f"number of {level}")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"Score distribution by true class: {level}")
        ax.legend()
    return save(fig, path)


def reliability_diagram(levels: Mapping[str, Mapping[str, Sequence[float]]], path: Path,
                        title: str = "Reliability diagram (calibration)") -> Path:
    """Observed share of fakes against mean P(fake) per bin, with the bins' sizes below."""
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    bin_width = float(np.diff(next(iter(levels.values()))["edges"])[0])
    width = 0.9 * bin_width / len(levels)
    for k, (level, cal) in enumerate(levels.items()):
        color = LEVEL_COLORS.get(level)
        top.plot(cal["predicted"], cal["observed"], marker="o", color=color, lw=2, label=level)
        centers = np.asarray(cal["predicted"]) + (k - (len(levels) - 1) / 2) * width
        bottom.bar(centers, cal["count"], width=width, color=color, alpha=0.7, label=level)
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("observed share of fakes")
    top.set_title(title)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_xlabel("mean predicted P(fake) in bin")
    bottom.set_ylabel("count in bin")
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(alpha=0.3)
    return save(fig, path)

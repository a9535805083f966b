"""Every figure is written as a valid, non-trivial PNG; bad training logs fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dfpipe.evaluate import figures, metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.01  # something is drawn, not a blank canvas
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temporary file
    return pixels


@pytest.fixture(scope="module")
def levels() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    s = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    return {"crops": (y, s), "videos": (y[::8], s.reshape(10, 8).mean(axis=1))}


def test_confusion_matrices_in_counts_and_percent(tmp_path):
    cm = np.array([[3, 2], [1, 2]])
    counts = assert_png(figures.confusion_matrix(cm, tmp_path / "c.png", "counts"))
    percent = assert_png(figures.confusion_matrix(cm, tmp_path / "p.png", "pct", percent=True))
    assert counts.shape != percent.shape or not np.array_equal(counts, percent)
    # a class with no samples (one-class split) must not divide by zero
    assert_png(figures.confusion_matrix(np.array([[4, 1], [0, 0]]), tmp_path / "z.png", "one",
                                        percent=True))


def test_roc_pr_histograms_and_reliability(tmp_path, levels):
    assert_png(figures.roc_curves(levels, tmp_path / "roc.png"))
    assert_png(figures.pr_curves(levels, tmp_path / "pr.png"))
    hist = assert_png(figures.score_histograms(levels, 0.5, tmp_path / "hist.png"))
    assert hist.shape[1] > hist.shape[0]  # two panels side by side
    cal = {k: metrics.calibration(y, s) for k, (y, s) in levels.items()}
    assert_png(figures.reliability_diagram(cal, tmp_path / "rel.png"))


def test_histograms_and_reliability_work_with_one_class(tmp_path):
    y, s = np.zeros(6, dtype=int), np.linspace(0.1, 0.6, 6)
    one = {"crops": (y, s), "videos": (y[:2], s[:2])}
    assert_png(figures.score_histograms(one, 0.5, tmp_path / "hist.png"))
    cal = {k: metrics.calibration(yy, ss) for k, (yy, ss) in one.items()}
    assert_png(figures.reliability_diagram(cal, tmp_path / "rel.png"))


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The Figure objects the figure functions hand to ``save``, to check what they show."""
    figs: list = []
    real_save = figures.save

    def keep(fig, path):
        figs.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(figures, "save", keep)
    return figs


def test_confusion_matrix_cells_show_the_counts_and_row_shares(tmp_path, drawn):
    figures.confusion_matrix(np.array([[3, 1], [2, 6]]), tmp_path / "c.png", "counts")
    figures.confusion_matrix(np.array([[3, 1], [2, 6]]), tmp_path / "p.png", "pct", percent=True)
    counts, percent = ([t.get_text() for t in fig.axes[0].texts] for fig in drawn)
    assert counts == ["3\n(75.0%)", "1\n(25.0%)", "2\n(25.0%)", "6\n(75.0%)"]
    assert percent == ["75.0%\n(n=3)", "25.0%\n(n=1)", "25.0%\n(n=2)", "75.0%\n(n=6)"]
    assert [t.get_text() for t in drawn[0].axes[0].get_yticklabels()] == ["real", "fake"]


def test_roc_curve_is_sklearns_curve_with_its_auc(tmp_path, levels, drawn):
    from sklearn.metrics import roc_auc_score, roc_curve

    figures.roc_curves(levels, tmp_path / "roc.png")
    lines = {ln.get_label().split(" ")[0]: ln for ln in drawn[0].axes[0].get_lines()}
    for level, (y, s) in levels.items():
        fpr, tpr, _ = roc_curve(y, s)
        np.testing.assert_allclose(lines[level].get_xdata(), fpr)
        np.testing.assert_allclose(lines[level].get_ydata(), tpr)
        assert f"AUC {roc_auc_score(y, s):.3f}" in lines[level].get_label()


def test_histograms_mark_each_levels_threshold_and_count_each_class(tmp_path, levels, drawn):
    figures.score_histograms(levels, {"crops": 0.4, "videos": 0.6}, tmp_path / "h.png")
    for ax, (y, _), cut in zip(drawn[0].axes, levels.values(), (0.4, 0.6), strict=True):
        marks = [ln for ln in ax.get_lines() if ln.get_label().startswith("threshold")]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [cut, cut]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"real (n={int((y == 0).sum())})" in labels
        assert f"fake (n={int((y == 1).sum())})" in labels

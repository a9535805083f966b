"""The training curves draw what the log holds, mark fine-tuning, and refuse unusable logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dfpipe.core.errors import PipelineError
from dfpipe.core.traininglog import read_training_log
from dfpipe.train.curves import curves_figure, training_curves

LOG = ("epoch,auc,loss,lr,val_auc,val_loss\n0,0.7,0.6,0.001,0.65,0.65\n"
       "1,0.8,0.5,0.001,0.7,0.6\n2,0.9,0.4,0.0005,0.75,0.58\n")


def test_each_panel_plots_the_logged_train_and_validation_values(tmp_path: Path) -> None:
    log = tmp_path / "training_log.csv"
    log.write_text(LOG)
    columns = read_training_log(log)
    assert columns["val_auc"] == [0.65, 0.7, 0.75]
    fig = curves_figure(columns, fine_tune_epoch=1)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(panels) == ["loss", "auc", "lr"]
    for name in ("loss", "auc"):
        lines = {line.get_label(): line for line in panels[name].get_lines()}
        assert list(lines["train"].get_xdata()) == [1, 2, 3]
        assert list(lines["train"].get_ydata()) == columns[name]
        assert list(lines["validation"].get_ydata()) == columns[f"val_{name}"]
        marker = lines["fine-tuning starts"]
        assert list(marker.get_xdata()) == [1.5, 1.5]
    plain = curves_figure(columns)
    assert all("fine-tuning starts" not in [ln.get_label() for ln in ax.get_lines()]
               for ax in plain.axes)
    png = training_curves(log, tmp_path / "curves.png", fine_tune_epoch=1)
    assert imread(png).shape[0] > 200 and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a Keras CSVLogger log"),
    ("step,loss\n0,0.5\n", "not a Keras CSVLogger log"),
    ("epoch,loss,auc\n0,0.5,0.7\n", "no metric logged for both training and validation"),
])
def test_unusable_training_logs_raise_one_clear_error(tmp_path: Path, text: str,
                                                      message: str) -> None:
    log = tmp_path / "training_log.csv"
    log.write_text(text)
    with pytest.raises(PipelineError, match=message):
        training_curves(log, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_a_row_still_being_written_is_not_plotted(tmp_path: Path) -> None:
    log = tmp_path / "training_log.csv"
    log.write_text(LOG + "3,0.95,0.3")
    assert read_training_log(log)["epoch"] == [0.0, 1.0, 2.0]
    assert np.isfinite(read_training_log(log)["loss"]).all()

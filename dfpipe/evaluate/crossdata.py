"""One model, several datasets: the cross-dataset table the field prints, as CSV, Markdown, PNG.

Generalisation is the question deepfake detection is judged on: train on FaceForensics++
(c23), test on Celeb-DF, DFDC, DFD. Each dataset is evaluated in its own sub-folder (all of
evaluate's outputs), then ``cross_dataset.csv`` holds one row per dataset (the ``all`` row
of its per-method table), ``cross_dataset.md`` pivots it as DeepfakeBench does (one row per
model, one column per dataset) and ``cross_dataset.png`` draws frame and video AUC side by
side. Rows of other models already in the CSV are kept, so running evaluate once per model
into one folder builds the whole comparison.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dfpipe.core.errors import PipelineError
from dfpipe.evaluate import figures
from dfpipe.evaluate.run import evaluate
from dfpipe.evaluate.tables import METRIC_COLUMNS, video_info

log = logging.getLogger(__name__)

CROSS_CSV = "cross_dataset.csv"
CROSS_MD = "cross_dataset.md"
CROSS_PNG = "cross_dataset.png"
CROSS_COLUMNS: tuple[str, ...] = ("model", "dataset", "protocol", "videos", "failed",
                                  *METRIC_COLUMNS)


def expand_data(given: Sequence[Path]) -> list[Path]:
    """``--data`` values: folders, or a list file naming one folder per line (# comments)."""
    out: list[Path] = []
    for path in map(Path, given):
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            out += [(path.parent / ln.strip()) if not Path(ln.strip()).is_absolute()
                    else Path(ln.strip()) for ln in lines
                    if ln.strip() and not ln.lstrip().startswith("#")]
        else:
            out.append(path)
    if not out:
        raise PipelineError("--data names no dataset: give folders, or a file listing them")
    return out


def dataset_name(data: Path) -> str:
    """The dataset the manifest records most often, else the folder's name."""
    counts = Counter(i.get("dataset") for i in video_info(data).values() if i.get("dataset"))
    return counts.most_common(1)[0][0] if counts else Path(data).resolve().name


def _folder(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "data"
    folder, n = base, 2
    while folder in taken:
        folder, n = f"{base}_{n}", n + 1
    taken.add(folder)
    return folder


def model_label(model_path: Path, result: dict[str, Any]) -> str:
    backbone = (result.get("model") or {}).get("backbone")
    return f"{Path(model_path).stem} ({backbone})" if backbone else Path(model_path).stem


def evaluate_datasets(model_path: Path, datas: Sequence[Path], output: Path,
                      **options: Any) -> list[dict[str, Any]]:
    """Evaluate ``model_path`` on each dataset into ``output/<dataset>``; write the tables."""
    output = Path(output)
    rows, taken = [], set()
    datas = expand_data(datas)
    names = [dataset_name(d) for d in datas]
    # the same dataset twice (split and unsplit): the folder tells the columns apart
    names = [f"{n} ({Path(d).name})" if names.count(n) > 1 else n
             for n, d in zip(names, datas, strict=True)]
    for data, name in zip(datas, names, strict=True):
        result = evaluate(model_path, data, output=output / _folder(name, taken), **options)
        everything = next(r for r in result["per_method"] if r["level"] == "all")
        rows.append({"model": model_label(model_path, result), "dataset": name,
                     "protocol": result["data"]["selection"]["protocol"],
                     "videos": everything["real_videos"] + everything["fake_videos"],
                     **{k: everything[k] for k in ("failed", *METRIC_COLUMNS)}})
        log.info("%s: video AUC %s", name, everything["video_auc"])
    write_tables(output, rows)
    return rows


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _value(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def write_tables(output: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """cross_dataset.csv (earlier models' rows kept), .md pivot and .png bar chart."""
    output.mkdir(parents=True, exist_ok=True)
    models = {r["model"] for r in rows}
    kept = [r for r in _read(output / CROSS_CSV) if r.get("model") not in models]
    table = kept + [dict(r) for r in rows]
    with open(output / CROSS_CSV, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CROSS_COLUMNS)
        writer.writeheader()
        writer.writerows({k: r.get(k) for k in CROSS_COLUMNS} for r in table)
    (output / CROSS_MD).write_text(pivot(table), encoding="utf-8")
    return [output / CROSS_CSV, output / CROSS_MD, bar_chart(table, output / CROSS_PNG)]


def pivot(table: Sequence[dict[str, Any]]) -> str:
    """Markdown tables, one row per model and one column per dataset, frame then video AUC."""
    datasets = list(dict.fromkeys(r["dataset"] for r in table))
    models = list(dict.fromkeys(r["model"] for r in table))
    cell = {(r["model"], r["dataset"]): r for r in table}
    parts = []
    for metric, title in (("frame_auc", "Frame (crop) AUC"), ("video_auc", "Video AUC")):
        parts += [f"### {title}", "", "| model | " + " | ".join(datasets) + " | avg |",
                  "|---|" + "---|" * (len(datasets) + 1)]
        for model in models:
            values = [_value((cell.get((model, d)) or {}).get(metric)) for d in datasets]
            known = [v for v in values if v is not None]
            shown = ["-" if v is None else f"{v:.4f}" for v in values]
            avg = f"{np.mean(known):.4f}" if known else "-"
            parts.append(f"| {model} | " + " | ".join(shown) + f" | {avg} |")
        parts.append("")
    protocols = "; ".join(f"{r['dataset']}: {r['protocol']}" for r in table
                          if r["model"] == models[-1])
    parts.append(f"Videos scored per dataset: {protocols}. A video with no face found "
                 "scores 0.5 in video AUC (see `failed` in cross_dataset.csv).")
    return "\n".join(parts) + "\n"


def bar_chart(table: Sequence[dict[str, Any]], path: Path) -> Path:
    """Frame and video AUC per dataset (and model), side by side."""
    labels = [f"{r['dataset']}\n{r['model']}" if len({t['model'] for t in table}) > 1
              else r["dataset"] for r in table]
    x = np.arange(len(table))
    fig = Figure(figsize=(max(5.0, 1.4 * len(table) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    for offset, (key, name) in zip((-0.2, 0.2), (("frame_auc", "frame AUC"),
                                                 ("video_auc", "video AUC")), strict=True):
        values = [_value(r.get(key)) for r in table]
        bars = ax.bar(x + offset, [v or 0.0 for v in values], width=0.4, label=name)
        ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.3f}" for v in values],
                     fontsize=8)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("ROC AUC")
    ax.set_title("Cross-dataset AUC")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figures.save(fig, path)

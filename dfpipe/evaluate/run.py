"""Evaluate a trained detector on one split: score, aggregate per video, measure, draw, report.

The crops and their videos come from the split table (croptable), the model and its
threshold from the model file (modelio), the scores from the same scoring code as the app.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe import __version__
from dfpipe.core.errors import PipelineError
from dfpipe.core.files import SPLIT_TABLE, TRAINING_LOG
from dfpipe.core.images import feed_size_of
from dfpipe.core.labels import CLASS_NAMES
from dfpipe.core.splittable import Crop, load_split
from dfpipe.evaluate import figures, metrics, report, tables, unsplit
from dfpipe.evaluate.coverage import coverage_summary, read_uncovered, with_uncovered
from dfpipe.models.onnxrun import is_onnx_model, load_any
from dfpipe.scoring.crops import DEFAULT_BATCH_SIZE, aggregator
from dfpipe.scoring.judge import judge_split
from dfpipe.scoring.operating import operating_point_result, resolve_operating_point
from dfpipe.scoring.videos import VideoScore
from dfpipe.train.curves import training_curves

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("evaluation_results")
DEFAULT_SPLIT = "test"

LEVELS: tuple[str, str] = ("crops", "videos")
FIGURE_FILES: dict[str, str] = {
    "confusion_crops_counts": "confusion_matrix_crops_counts.png",
    "confusion_crops_percent": "confusion_matrix_crops_percent.png",
    "confusion_videos_counts": "confusion_matrix_videos_counts.png",
    "confusion_videos_percent": "confusion_matrix_videos_percent.png",
    "roc": "roc_curves.png",
    "pr": "pr_curves.png",
    "histograms": "score_histograms.png",
    "reliability": "reliability_diagram.png",
    "training": "training_curves.png",
}


@dataclass(frozen=True)
class Video:
    """One video of the split: its crops' positions in the frame arrays and its label."""

    video_id: str
    group: str
    label: int
    members: tuple[int, ...]


def group_videos(crops: Sequence[Crop]) -> list[Video]:
    """Videos in order of first crop; refuses a video whose crops disagree on the label."""
    members: dict[str, list[int]] = {}
    for i, crop in enumerate(crops):
        members.setdefault(crop.video_id, []).append(i)
    videos = []
    for video_id, idx in members.items():
        labels = {crops[i].label for i in idx}
        if len(labels) > 1:
            raise PipelineError(f"video {video_id} has both real and fake crops in the split "
                                "table: fix its labels (one label per video)")
        videos.append(Video(video_id, crops[idx[0]].group, labels.pop(), tuple(idx)))
    return videos


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _level(y: np.ndarray, s: np.ndarray, threshold: float, resamples: int, seed: int,
           clusters: Sequence[str] | None) -> dict[str, Any]:
    result = metrics.binary_metrics(y, s, threshold)
    result["ci"] = (metrics.bootstrap_ci(y, s, threshold, resamples, seed, clusters)
                    if resamples > 0 else None)
    result["calibration"] = metrics.calibration(y, s)
    return result


def _fine_tune_epoch(meta: dict[str, Any]) -> int:
    """Epochs phase 1 really ran (``phase_boundary``); older models: their --head-epochs."""
    if isinstance(meta.get("phase_boundary"), int):
        return int(meta["phase_boundary"])
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    try:
        return int(config.get("head_epochs") or 0)
    except (TypeError, ValueError):
        return 0


def _draw(output: Path, levels: dict[str, tuple[np.ndarray, np.ndarray]],
          result: dict[str, Any], training_log: Path | None,
          fine_tune_epoch: int = 0) -> tuple[list[str], dict[str, str]]:
    """Every figure that the data allows; the others with the reason they were not drawn."""
    drawn: list[Path] = []
    skipped: dict[str, str] = {}
    for level in LEVELS:
        cm = metrics.confusion_array(result[level]["confusion_matrix"])
        for percent, kind in ((False, "counts"), (True, "percent")):
            name = FIGURE_FILES[f"confusion_{level}_{kind}"]
            what = "percent of each true class" if percent else "counts"
            drawn.append(figures.confusion_matrix(
                cm, output / name, f"Confusion matrix, {level} ({what})", percent=percent))
    if "roc_auc" in result["crops"]["undefined"]:
        for key in ("roc", "pr"):
            skipped[FIGURE_FILES[key]] = result["crops"]["undefined"]["roc_auc"]
    else:
        drawn.append(figures.roc_curves(levels, output / FIGURE_FILES["roc"]))
        drawn.append(figures.pr_curves(levels, output / FIGURE_FILES["pr"]))
    cuts = {"crops": result["crop_threshold"]["value"], "videos": result["threshold"]["value"]}
    drawn.append(figures.score_histograms({k: levels[k] for k in LEVELS}, cuts,
                                          output / FIGURE_FILES["histograms"]))
    drawn.append(figures.reliability_diagram(
        {level: result[level]["calibration"] for level in LEVELS},
        output / FIGURE_FILES["reliability"]))
    if training_log is None:
        skipped[FIGURE_FILES["training"]] = f"no {TRAINING_LOG} beside the model"
    else:
        try:
            drawn.append(training_curves(training_log, output / FIGURE_FILES["training"],
                                                 fine_tune_epoch=fine_tune_epoch))
        except PipelineError as exc:
            log.warning("training curves not drawn: %s", exc)
            skipped[FIGURE_FILES["training"]] = str(exc)
    for name in skipped:
        (output / name).unlink(missing_ok=True)
    return [p.name for p in drawn], skipped


def evaluate(model_path: Path, data_root: Path, split: str = DEFAULT_SPLIT,
             aggregate: str | None = None, threshold: float | None = None,
             output: Path = DEFAULT_OUTPUT, batch_size: int = DEFAULT_BATCH_SIZE,
             bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
             progress: bool = True, crop_threshold: float | None = None,
             crops_per_video: int | None = None, tta: str | None = None,
             runtime: str = "auto", precision: str | None = None) -> dict[str, Any]:
    """Score every crop of ``split``, aggregate per video, write figures and reports.

    ``runtime``: ``auto`` follows the model file's suffix (.h5 TensorFlow, .onnx ONNX Runtime,
    which never imports TensorFlow), ``onnx`` takes the export beside a .h5. ``precision``:
    float32 (None), bfloat16 or auto (:mod:`dfpipe.models.precision`).
    The rule, the crops each video is judged on and the thresholds default to the model's
    operating point (video threshold for videos, crop threshold for crops). Returns the dict
    written to metrics.json.
    """
    model_path, data_root, output = Path(model_path), Path(data_root), Path(output)
    if aggregate is not None:
        aggregator(aggregate)
    if batch_size < 1:
        raise PipelineError(f"--batch-size must be at least 1, got {batch_size}")
    if bootstrap < 0:
        raise PipelineError(f"--bootstrap must be 0 (off) or more resamples, got {bootstrap}")
    if crops_per_video is not None and crops_per_video < 0:
        raise PipelineError(f"--crops-per-video must be 0 (all) or more, got {crops_per_video}")
    test_only = unsplit.load_test_only(data_root) if unsplit.is_preprocessed(data_root) else None
    crops = test_only.crops if test_only else load_split(data_root, split)
    videos = group_videos(crops)
    if not model_path.exists():  # a folder is named as such by read_metadata
        raise PipelineError(f"model file not found: {model_path} (train one with train.py)")
    model, meta = load_any(model_path, runtime, precision=precision)
    point = resolve_operating_point(meta, aggregate, threshold, crop_threshold)
    aggregate, thr, crop_thr = point.aggregate, point.threshold, point.crop_threshold
    rule = aggregator(aggregate)
    log.info("scoring %d crops of %d videos from %s/%s", len(crops), len(videos), data_root, split)

    k = point.crops_per_video if crops_per_video is None else int(crops_per_video)
    tta = tta or (point.block or {}).get("tta") or "none"
    scores, by_video = judge_split(model, crops, aggregate, k, feed_size_of(meta), batch_size,
                                   progress, tta)
    y_crops = np.array([c.label for c in crops])
    y_videos = np.array([v.label for v in videos])
    s_videos = np.array([by_video[v.video_id].score for v in videos])
    levels = {"crops": (y_crops, scores), "videos": (y_videos, s_videos)}

    training_log = model_path.parent / TRAINING_LOG
    result: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dfpipe_version": __version__,
        "model": {"path": str(model_path), "runtime": "onnx" if is_onnx_model(model) else "tf",
                  "precision": meta["inference_precision"],
                  "backbone": meta.get("backbone"),
                  "input_size": meta.get("input_size"), "created": meta.get("created"),
                  "training_log": str(training_log) if training_log.is_file() else None,
                  "validation": meta.get("validation")},
        "data": {"root": str(data_root), "split": split,
                 "source": SPLIT_TABLE if (data_root / SPLIT_TABLE).is_file() else "folders"},
        "threshold": {"value": thr, "source": point.threshold_source, "level": "videos"},
        "crop_threshold": {"value": crop_thr, "source": point.crop_threshold_source,
                           "level": "crops"},
        "tta": tta,
        "aggregation": {"rule": aggregate, "description": (rule.__doc__ or "").splitlines()[0],
                        "source": point.aggregate_source},
        "operating_point": operating_point_result(point, k, split, y_videos, s_videos,
                                                  by_video),
        "bootstrap": ({"resamples": bootstrap, "seed": seed,
                       "confidence": metrics.CONFIDENCE} if bootstrap else None),
    }
    result["data"]["selection"] = (test_only.describe() if test_only
                                   else {"protocol": f"split {split}", "videos": len(videos)})
    groups = [v.group for v in videos]
    result["crops"] = _level(y_crops, scores, crop_thr, bootstrap, seed,
                              [c.group for c in crops])
    result["videos"] = _level(y_videos, s_videos, thr, bootstrap, seed, groups)
    uncovered = test_only.uncovered if test_only else read_uncovered(data_root, split)
    result["coverage"] = coverage_summary(len(videos), uncovered)
    result["videos_uncovered_at_half"] = None
    if uncovered:
        y_all, s_all, g_all = with_uncovered(y_videos, s_videos, groups, uncovered)
        result["videos_uncovered_at_half"] = _level(y_all, s_all, thr, bootstrap, seed, g_all)
    for level in LEVELS:
        for name, reason in result[level]["undefined"].items():
            log.warning("%s: %s undefined: %s", level, name, reason)

    output.mkdir(parents=True, exist_ok=True)
    result["frames"] = result["crops"]  # the old name of the crop level, for older readers
    result["figures"], result["skipped_figures"] = _draw(
        output, levels, result, training_log if training_log.is_file() else None,
        _fine_tune_epoch(meta))
    result["files"] = [report.METRICS_JSON, report.METRICS_TEXT, report.CROPS_CSV,
                       report.VIDEOS_CSV]
    result["per_method"] = tables.per_method_rows(
        [c.video_id for c in crops], y_crops, scores, [v.video_id for v in videos], y_videos,
        s_videos, uncovered, thr, tables.video_info(data_root))
    result["files"].append(tables.PER_METHOD_CSV)
    report.write_report(output, result, _crop_rows(crops, scores, crop_thr, data_root),
                        _video_rows(videos, scores, by_video, thr))
    tables.write_per_method(output, result["per_method"], output / report.METRICS_TEXT,
                            result["data"]["selection"]["protocol"])
    return result


def _crop_rows(crops: Sequence[Crop], scores: np.ndarray, threshold: float,
                root: Path) -> Iterator[dict[str, Any]]:
    predicted = metrics.predict(scores, threshold)
    for crop, score, pred in zip(crops, scores, predicted, strict=True):
        yield {"path": _relative(crop.path, root), "video_id": crop.video_id,
               "group": crop.group, "frame": crop.frame, "label": CLASS_NAMES[crop.label],
               "label_id": crop.label, "score": float(score), "predicted": CLASS_NAMES[pred],
               "correct": int(pred == crop.label)}


def _video_rows(videos: Sequence[Video], scores: np.ndarray, by_video: dict[str, VideoScore],
                threshold: float) -> Iterator[dict[str, Any]]:
    video_scores = np.array([by_video[v.video_id].score for v in videos])
    predicted = metrics.predict(video_scores, threshold)
    for video, score, pred in zip(videos, video_scores, predicted, strict=True):
        own = scores[list(video.members)]
        yield {"video_id": video.video_id, "group": video.group,
               "label": CLASS_NAMES[video.label], "label_id": video.label,
               "crops": len(video.members), "crops_used": by_video[video.video_id].used,
               "score": float(score),
               "predicted": CLASS_NAMES[pred], "correct": int(pred == video.label),
               "crop_score_min": float(own.min()), "crop_score_max": float(own.max())}

"""Preprocessing: labelled videos -> square face crops + one manifest record per video.

Each video is finished atomically: its crops are written to a hidden temporary folder,
renamed into place, and only then is its manifest line appended. A run killed at any
moment therefore resumes without redoing a finished video or keeping a half one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from dfpipe.core.atomic import write_json_atomic
from dfpipe.core.errors import PipelineError, describe
from dfpipe.core.labels import VIDEO_EXTENSIONS
from dfpipe.core.manifest import append_record, manifest_name, read_manifests, run_file_name
from dfpipe.extract import faces as facelib
from dfpipe.extract import layouts
from dfpipe.extract.identities import (
    LabelRow,
    connect,
    find_identities,
    is_ungrouped_fake,
    merge_identities,
    read_labels_csv,
)
from dfpipe.extract.video import VideoError, VideoInfo, iter_sampled_frames, open_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Everything that decides which crops a video yields; recorded in every record."""

    detector: str = "retinaface"
    every: int | None = 15
    frames: int | None = None
    margin: float = facelib.DEFAULT_MARGIN
    size: int = facelib.DEFAULT_SIZE
    detect_max_side: int = facelib.DEFAULT_DETECT_MAX_SIDE
    min_confidence: float | None = None
    faces: str = "largest"
    preset: str | None = None

    def resolved(self) -> Settings:
        """Fill detector-dependent defaults so the record states what was really used."""
        conf = self.min_confidence
        if conf is None:
            conf = facelib.default_confidence(self.detector)
        every = None if self.frames else (self.every or 15)
        return Settings(self.detector, every, self.frames, self.margin, self.size,
                        self.detect_max_side, conf, self.faces, self.preset)

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("detector")
        if data["preset"] is None:
            data.pop("preset")  # records made without a preset stay as they were
        return data


@dataclass(frozen=True)
class VideoJob:
    """One video to process and where its evidence came from."""

    source: str
    relpath: str
    label: str
    group: str
    group_rule: str
    video_id: str
    identities: tuple[str, ...] = ()
    dataset: str | None = None
    method: str | None = None
    compression: str | None = None


@dataclass
class Summary:
    """Closing figures of a run (this run's work, plus what was already done)."""

    total: int = 0
    skipped: int = 0
    statuses: Counter = field(default_factory=Counter)
    faces_saved: int = 0
    frames_sampled: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    ungrouped_fakes: int = 0


def video_id_for(label_rel: Path) -> str:
    """Stem plus 8 hex of the path's SHA-1: readable and unique across sub-folders."""
    digest = hashlib.sha1(label_rel.as_posix().encode("utf-8")).hexdigest()[:8]
    return f"{label_rel.stem}-{digest}"


def discover(root: Path, labels_csv: Path | None = None) -> list[VideoJob]:
    """Every video of ``root`` (``real/`` and ``fake/`` at any depth, or a benchmark's own
    layout, :mod:`dfpipe.extract.layouts`), with its group, dataset, method and compression."""
    root = Path(root)
    found = layouts.list_videos(root)
    if labels_csv is None and (root / "labels.csv").is_file() and \
            layouts.detect_layout(root) != "dfdc_test":  # there it holds the labels themselves
        labels_csv = root / "labels.csv"
        log.info("using groups from %s", labels_csv)
    labels: dict[str, LabelRow] = read_labels_csv(labels_csv, root) if labels_csv else {}
    jobs = []
    for video in found:
        row = labels.get(video.rel)
        if row is not None and row.label is not None and row.label != video.label:
            raise PipelineError(f"{labels_csv} labels {video.rel} as {row.label!r} but the "
                                f"dataset says {video.label}: fix one of them")
        ids, rule = find_identities(video.path, video.label, labels, video.rel)
        if video.rule:
            ids, rule = merge_identities([(ids, rule), (video.identities, video.rule)])
        # a link that leads nowhere (dangling, a loop) is kept: its record says why
        broken = video.path.is_symlink() and not video.path.exists()
        source = os.path.abspath(video.path) if broken else str(video.path.resolve())
        jobs.append(VideoJob(source, video.rel, video.label, ids[0], rule,
                             video_id_for(video.id_rel), tuple(ids), video.dataset,
                             video.method, video.compression))
    if not jobs:
        raise PipelineError(f"no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) under "
                            f"{root}/real or {root}/fake")
    ids = Counter(job.video_id for job in jobs)
    clashes = [vid for vid, n in ids.items() if n > 1]
    if clashes:
        raise PipelineError(f"two videos map to the same id {clashes[0]}: rename one")
    groups = connect({job.video_id: job.identities for job in jobs})
    return [replace(job, group=groups[job.video_id]) for job in jobs]


def count_ungrouped_fakes(jobs: list[VideoJob]) -> int:
    """Fakes with no known source (their group is only themselves): a leak risk for split."""
    return sum(is_ungrouped_fake(job.label, job.group_rule) for job in jobs)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``'K/N'`` -> (K, N) with 0 <= K < N; None for no sharding."""
    if not text:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise PipelineError(f"--shard must look like K/N (e.g. 0/4), not {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise PipelineError(f"--shard {text}: need N >= 1 and 0 <= K < N")
    return k, n


def in_shard(job: VideoJob, shard: tuple[int, int] | None) -> bool:
    """Deterministic share by a hash of the relative path: stable when videos are added."""
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha1(job.relpath.encode("utf-8")).hexdigest(), 16) % n == k


# -- one video -----------------------------------------------------------------------------

def process_video(job: VideoJob, settings: Settings, detector: facelib.Detector,
                  out_root: Path, max_frames: int | None = None) -> dict[str, Any]:
    """Sample, detect, crop and save one video; always returns a manifest record.

    At most ``max_frames`` frames are decoded (None: all); a video cut short says so in its
    record's message.
    """
    start = time.perf_counter()
    final_dir = out_root / job.label / job.video_id
    tmp_dir = out_root / job.label / f".tmp-{job.video_id}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    record: dict[str, Any] = {
        **asdict(job), "detector": settings.detector, "settings": settings.record(),
        "fps": 0.0, "frames_read": 0, "frames_sampled": 0, "faces_saved": 0,
        "crops": [], "status": "ok", "message": "",
    }
    try:
        cap, info = open_video(Path(job.source))
        cap.release()
        record["fps"] = round(info.fps, 3)
        tmp_dir.mkdir(parents=True)
        crops = _extract(job, settings, detector, info, tmp_dir, record, max_frames)
        record["frames_read"] = info.frames_read
        record["crops"] = crops
        record["faces_saved"] = len(crops)
        if record["frames_sampled"] == 0:
            record.update(status="error", message="no frame could be decoded")
        elif not crops:
            record.update(status="no_face",
                          message=f"no face with confidence >= {settings.min_confidence} in "
                                  f"{record['frames_sampled']} sampled frames")
        if info.capped:
            record["message"] = (f"{record['message']}; " if record["message"] else "") + (
                f"stopped after --max-frames {max_frames} frames")
        if final_dir.exists():
            shutil.rmtree(final_dir)
        if crops:
            os.replace(tmp_dir, final_dir)
    except VideoError as exc:
        record.update(status="error", message=str(exc), crops=[], faces_saved=0)
    except OSError as exc:  # unreadable, a symlink loop, a vanished file: the record says so
        log.warning("%s: %s", job.relpath, describe(exc))
        record.update(status="error", message=describe(exc), crops=[], faces_saved=0)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
        # one line; the traceback with --debug (a bug, not a bad file)
        log.error("unexpected failure on %s: %s", job.relpath, describe(exc),
                  exc_info=log.isEnabledFor(logging.DEBUG))
        record.update(status="error", message=f"{type(exc).__name__}: {exc}", crops=[],
                      faces_saved=0)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _extract(job: VideoJob, settings: Settings, detector: facelib.Detector, info: VideoInfo,
             tmp_dir: Path, record: dict[str, Any],
             max_frames: int | None = None) -> list[dict[str, Any]]:
    batch_size = facelib.DETECTORS[settings.detector].batch_size
    crops: list[dict[str, Any]] = []
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        found = facelib.detect_downscaled(detector, [f for _, f in batch],
                                          settings.detect_max_side)
        for (index, frame), faces in zip(batch, found, strict=True):
            for face_no, face in enumerate(facelib.select_faces(faces, settings.faces)):
                crop = facelib.crop_face(frame, face.box, settings.margin, settings.size)
                name = f"{index:06d}_{face_no:02d}.jpg"
                (tmp_dir / name).write_bytes(facelib.encode_crop(crop))
                crops.append({
                    "file": f"{job.label}/{job.video_id}/{name}", "frame": index,
                    "face": face_no, "box": [round(v, 1) for v in face.box],
                    "face_size": round(face.size, 1), "confidence": round(face.confidence, 4),
                    "landmarks": None if face.landmarks is None else facelib.landmarks_in_crop(
                        face.landmarks, face.box, settings.margin, frame.shape[1],
                        frame.shape[0], settings.size),
                })
        batch.clear()

    for index, frame in iter_sampled_frames(Path(job.source), settings.every, settings.frames,
                                            info, max_frames):
        record["frames_sampled"] += 1
        batch.append((index, frame))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return crops


# -- worker processes ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(settings: Settings, out_root: str, threads: int,
                 max_frames: int | None = None, mtcnn_onnx: Path | None = None) -> None:
    if mtcnn_onnx is None:  # the ONNX path never imports TensorFlow
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    _WORKER["detector"] = facelib.build_detector(settings.detector, settings.min_confidence,
                                                 mtcnn_onnx, threads)
    _WORKER["settings"] = settings
    _WORKER["out_root"] = Path(out_root)
    _WORKER["max_frames"] = max_frames


def _work(job: VideoJob) -> dict[str, Any]:
    return process_video(job, _WORKER["settings"], _WORKER["detector"], _WORKER["out_root"],
                         _WORKER.get("max_frames"))


# -- the run -------------------------------------------------------------------------------

def _check_settings(existing: list[dict[str, Any]], settings: Settings) -> None:
    for rec in existing:
        if rec.get("settings") != settings.record() or rec.get("detector") != settings.detector:
            raise PipelineError(
                f"the output already holds videos processed with other settings "
                f"({rec.get('detector')} {rec.get('settings')}); rerun with the same options, "
                "use --overwrite to redo everything, or choose another --output")


def run(input_root: Path, output_root: Path, settings: Settings, workers: int = 1,
        shard: tuple[int, int] | None = None, overwrite: bool = False,
        retry_errors: bool = False, labels_csv: Path | None = None,
        limit: int | None = None, max_frames: int | None = None,
        mtcnn_onnx: Path | None = None) -> Summary:
    """Process every (not yet finished) video of this shard; returns the run's summary.

    ``max_frames`` caps the frames decoded per video (None: no cap). ``mtcnn_onnx``: run
    MTCNN from its exported networks (``export.py --detector mtcnn``), without TensorFlow;
    the faces are the package's, so it is not a setting and a resumed run may switch."""
    if max_frames is not None and max_frames < 1:
        raise PipelineError(f"--max-frames must be at least 1, got {max_frames}")
    settings = settings.resolved()
    if settings.faces not in ("largest", "all"):
        raise PipelineError("--faces must be 'largest' or 'all'")
    if settings.size < 16 or settings.margin < 1.0:
        raise PipelineError("--size must be >= 16 and --margin >= 1.0")
    jobs = [job for job in discover(input_root, labels_csv) if in_shard(job, shard)]
    if mtcnn_onnx is not None:  # a missing or wrong export fails here, in one line
        facelib.build_detector(settings.detector, settings.min_confidence, mtcnn_onnx)
    else:
        facelib.preflight(settings.detector)  # after the cheap path checks
    if limit:
        jobs = jobs[:limit]
    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    manifest = output_root / manifest_name(shard)
    run_file = output_root / run_file_name(shard)
    if overwrite:
        manifest.unlink(missing_ok=True)
    ours = {job.video_id for job in jobs}
    existing = [rec for rec in read_manifests(output_root) if rec["video_id"] in ours]
    if not overwrite:
        _check_settings(existing, settings)
    # --overwrite redoes every video of this share, also those recorded in other manifests
    # of the folder (an earlier unsharded run, other shard counts): the newest record wins.
    done = set() if overwrite else {rec["video_id"] for rec in existing
                                    if not (retry_errors and rec.get("status") == "error")}
    todo = [job for job in jobs if job.video_id not in done]
    summary = Summary(total=len(jobs), skipped=len(jobs) - len(todo),
                      ungrouped_fakes=count_ungrouped_fakes(jobs))
    run_info = {"total": len(jobs), "shard": list(shard) if shard else None,
                "started": time.time(), "finished": None, "detector": settings.detector,
                "settings": settings.record(), "input": str(Path(input_root).resolve()),
                "max_frames": max_frames}
    write_json_atomic(run_file, run_info, sort_keys=True)
    log.info("%d videos in this share, %d already done, %d to do with %d worker(s)",
             len(jobs), summary.skipped, len(todo), workers)
    start = time.perf_counter()
    for record in _records(todo, settings, output_root, workers, max_frames, mtcnn_onnx):
        record["finished"] = time.time()
        append_record(manifest, record)
        summary.statuses[record["status"]] += 1
        summary.faces_saved += record["faces_saved"]
        summary.frames_sampled += record["frames_sampled"]
        if record["status"] != "ok":
            summary.errors.append(f"{record['relpath']}: {record['status']}: "
                                  f"{record['message']}")
    summary.seconds = time.perf_counter() - start
    run_info["finished"] = time.time()
    write_json_atomic(run_file, run_info, sort_keys=True)
    return summary


def largest_first(jobs: list[VideoJob]) -> list[VideoJob]:
    """The jobs by file size, largest first (ties in discovery order), so no worker is left
    running one long video alone at the end (longest-job-first; the size is a free stand-in
    for the decode work, read without opening any video)."""
    def size(job: VideoJob) -> int:
        try:
            return os.stat(job.source).st_size
        except OSError:
            return 0
    return sorted(jobs, key=size, reverse=True)


def _records(todo: list[VideoJob], settings: Settings, out_root: Path, workers: int,
             max_frames: int | None = None, mtcnn_onnx: Path | None = None):
    bar = tqdm(total=len(todo), unit="video", desc="preprocess", dynamic_ncols=True)
    try:
        if workers <= 1 or len(todo) <= 1:
            detector = facelib.build_detector(settings.detector, settings.min_confidence,
                                              mtcnn_onnx) if todo else None
            for job in todo:
                yield process_video(job, settings, detector, out_root, max_frames)
                bar.update()
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(settings, str(out_root), threads,
                                           max_frames, mtcnn_onnx)) as pool:
            futures = {pool.submit(_work, job): job for job in largest_first(todo)}
            for future in as_completed(futures):
                yield future.result()
                bar.update()
    finally:
        bar.close()

"""Background analysis: a fixed pool of worker threads fed by a bounded queue.

A full queue refuses new work at once (the API answers 503 with a retry hint) instead of
piling uploads on disk. A job stores its verdict as soon as the video is scored; its upload is
deleted as soon as the video has been read. Grad-CAM heatmaps are drawn afterwards by one
background thread that gives way to analyses (it waits while any is running or queued, batch
by batch), so explaining one video never delays the verdict on the next.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.images import read_rgb
from dfpipe.extract.video import VideoError
from dfpipe.serve.analyzer import Analyzer
from dfpipe.serve.frames import Limits
from dfpipe.serve.web.records import write_record
from dfpipe.serve.web.redact import names_only
from dfpipe.serve.web.store import JobStore

log = logging.getLogger(__name__)
WORKER_READY = "worker ready: face detector built and model traced"

PROGRESS_INTERVAL_S = 0.25
YIELD_S = 0.1


STOPPED = "the server was stopped before this video was analysed: upload it again"
HEATMAPS_CUT = "the server stopped while drawing them"


class QueueFull(Exception):
    """Every worker is busy and the waiting line is full."""


class JobStopped(Exception):
    """The server is stopping: the running analysis ends at its next progress report."""


class JobPool:
    """``workers`` threads running ``runner(job_id, upload)`` for jobs from a bounded queue."""

    def __init__(self, runner: Callable[[str, Path], None], workers: int,
                 queue_size: int, warm_up: Callable[[], None] | None = None) -> None:
        self._runner = runner
        self._warm_up = warm_up
        self._queue: queue.Queue[tuple[str, Path] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self.running = 0
        self.workers = workers
        self.capacity = queue_size
        self._threads = [threading.Thread(target=self._loop, name=f"dfpipe-job-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job_id: str, upload: Path) -> None:
        try:
            self._queue.put_nowait((job_id, upload))
        except queue.Full:
            raise QueueFull from None

    def full(self) -> bool:
        """Whether a new job would be refused now (checked before an upload is read)."""
        return self._queue.full()

    def busy(self) -> bool:
        """Whether any analysis is running or waiting."""
        return self.running > 0 or not self._queue.empty()

    def stats(self) -> dict[str, int]:
        return {"workers": self.workers, "running": self.running,
                "queued": self._queue.qsize(), "capacity": self.capacity}

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask each worker to stop after its current job; wait up to ``timeout`` seconds."""
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self) -> None:
        if self._warm_up is not None:
            try:
                self._warm_up()
                log.info("%s", WORKER_READY)
            except Exception:  # noqa: BLE001 - a failed warm-up only costs the first job time
                log.exception("worker warm-up failed")
        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._lock:
                self.running += 1
            try:
                self._runner(*item)
            except Exception:  # noqa: BLE001 - a worker must survive any job
                log.exception("job %s failed outside its own error handling", item[0])
            finally:
                with self._lock:
                    self.running -= 1


class JobRunner:
    """Runs one job: analysis, artifacts on disk, verdict and heatmaps into the store."""

    def __init__(self, analyzer: Analyzer, store: JobStore, artifacts: Path,
                 gradcam: bool = True, gradcam_batch: int = 8,
                 limits: Limits | None = None) -> None:
        self.analyzer = analyzer
        self.limits = limits or Limits()
        self.after_job: Callable[[], None] = lambda: None
        self.metrics: Any = None  # a web.metrics.Metrics, when the app keeps them
        self.store = store
        self.artifacts = Path(artifacts)
        self.gradcam = gradcam
        self.gradcam_batch = gradcam_batch
        self._cam: Any = None
        self._cam_lock = threading.Lock()
        self.busy: Callable[[], bool] = lambda: False
        self.stopping = threading.Event()  # set on shutdown: running jobs end, cleanly
        self._heat_queue: queue.Queue[str | None] = queue.Queue()
        self._heat_thread = threading.Thread(target=self._heat_loop, name="dfpipe-heatmaps",
                                             daemon=True)
        if gradcam:
            self._heat_thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the heatmap thread after its current batch; jobs still waiting for heatmaps
        keep their verdict and say the heatmaps were not drawn."""
        self.stopping.set()
        if self._heat_thread.is_alive():
            self._heat_queue.put(None)
            self._heat_thread.join(timeout)
        while not self._heat_queue.empty():
            job_id = self._heat_queue.get_nowait()
            if job_id is not None:
                self.close_heatmaps(job_id)

    def close_heatmaps(self, job_id: str, reason: str = HEATMAPS_CUT) -> None:
        """A job whose heatmaps will never be finished: drop the ones drawn (no orphan
        ``cam_*.jpg``), say why in its result, mark it done and keep its record."""
        folder = self.job_dir(job_id)
        for cam in folder.glob("cam_*.jpg"):
            cam.unlink(missing_ok=True)
        job = self.store.get(job_id)
        if job is None or job["result"] is None:
            return
        result = job["result"]
        for face in result.get("faces", []):
            face.pop("heatmap", None)
        result["heatmaps"] = {"available": False, "reason": reason}
        values = {} if job["status"] == "done" else {
            "status": "done", "stage": "done", "finished": time.time()}
        self._save(job_id, result=result, **values)

    def job_dir(self, job_id: str) -> Path:
        return self.artifacts / job_id

    def __call__(self, job_id: str, upload: Path) -> None:
        try:
            self._run(job_id, upload)
        finally:
            self._observe(job_id)
            self._after()

    def _observe(self, job_id: str) -> None:
        """Report how long the job waited and ran (to its verdict or error) to the metrics."""
        job = self.store.get(job_id) if self.metrics is not None else None
        if job is None or job["started"] is None:
            return
        end = job["verdict_at"] or job["finished"] or time.time()
        self.metrics.finished("error" if job["status"] == "error" else "done",
                              job["started"] - job["created"], end - job["started"])

    def _after(self) -> None:
        try:
            self.after_job()
        except Exception:  # noqa: BLE001 - housekeeping never fails a job
            log.exception("after-job housekeeping failed")

    def _run(self, job_id: str, upload: Path) -> None:
        store = self.store
        job = store.get(job_id)
        if job is None:
            Path(upload).unlink(missing_ok=True)
            return
        if self.stopping.is_set():  # queued before the stop: never started
            Path(upload).unlink(missing_ok=True)
            self._fail(job_id, STOPPED)
            return
        started = time.time()
        store.update(job_id, status="running", stage="frames", started=started)
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if self.stopping.is_set():
                raise JobStopped
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL_S or done >= total:
                last[0] = now
                store.update(job_id, stage=stage, done=done, total=total)

        def save_crop(index: int, _rgb: Any, jpeg: bytes) -> None:
            (folder / f"face_{index:04d}.jpg").write_bytes(jpeg)

        try:
            try:
                result = self.analyzer.analyze(Path(upload), progress, save_crop,
                                               limits=self.limits).result
            finally:
                Path(upload).unlink(missing_ok=True)
        except JobStopped:
            log.info("job %s: stopped with the server", job_id)
            self._fail(job_id, STOPPED.replace("before", "while"))
            return
        except (VideoError, PipelineError) as exc:
            self._fail(job_id, f"the video could not be analysed: {exc}")
            return
        except OSError as exc:  # writing the face crops: a full disk, most likely
            log.error("job %s: cannot write its files: %s", job_id, exc)
            self._fail(job_id, f"the server could not store this job's files "
                               f"({exc.strerror or exc}); its disk may be full: try later")
            return
        except Exception as exc:  # noqa: BLE001 - the server must keep serving
            log.exception("job %s: analysis failed", job_id)
            self._fail(job_id, f"internal error while analysing ({type(exc).__name__}); "
                               "the server logs have the details")
            return
        result["video"]["name"] = job["filename"]
        result["timing"]["queue_s"] = round(started - job["created"], 4)
        draw = self.gradcam and bool(result["faces"]) and not self.stopping.is_set()
        if not self.gradcam:
            reason = "Grad-CAM is switched off on this server"
        elif self.stopping.is_set() and result["faces"]:
            reason = HEATMAPS_CUT
        else:
            reason = "being drawn" if draw else "no face to explain"
        result["heatmaps"] = {"available": False, "reason": reason}
        now = time.time()
        try:
            self._save(job_id, strict=True, result=result, verdict=result["verdict"],
                       score=result["score"], verdict_at=now, message=result["message"],
                       **({"stage": "heatmaps", "done": 0, "total": len(result["faces"])}
                          if draw else {"status": "done", "stage": "done", "finished": now}))
        except OSError as exc:
            self._fail(job_id, f"the result could not be saved ({exc.strerror or exc}); the "
                               "server's disk may be full: try later")
            return
        if draw:
            self._heat_queue.put(job_id)

    def _save(self, job_id: str, strict: bool = False, **values: Any) -> None:
        """Record the job's new state in its folder (``result.json``), then in the store, so
        whoever sees the store change finds the record complete; the store can be rebuilt
        from the records. A record that cannot be written raises when ``strict``, else it is
        logged and the store is updated all the same."""
        job = self.store.get(job_id)
        folder = self.job_dir(job_id)
        if job is not None and folder.is_dir():
            try:
                write_record(folder, {**job, **values})
            except OSError as exc:
                log.error("job %s: cannot write its record: %s", job_id, exc)
                if strict:
                    raise
        self.store.update(job_id, **values)

    def _fail(self, job_id: str, message: str) -> None:
        self.store.update(job_id, status="error", stage="error", message=names_only(message),
                          finished=time.time())
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def _heat_loop(self) -> None:
        while True:
            job_id = self._heat_queue.get()
            if job_id is None:
                return
            try:
                job = self.store.get(job_id)
                if job is None or job["result"] is None:
                    continue
                result = job["result"]
                result["heatmaps"] = self._heatmaps(job_id, self.job_dir(job_id), result)
                self._save(job_id, result=result, status="done", stage="done",
                           finished=time.time())
            except Exception:  # noqa: BLE001 - the thread must survive any job
                log.exception("job %s: heatmaps failed", job_id)
                self._save(job_id, status="done", stage="done", finished=time.time())
            self._after()

    def _heatmaps(self, job_id: str, folder: Path, result: dict[str, Any]) -> dict[str, Any]:
        """Grad-CAM overlays for every face, in batches; a failure keeps the verdict."""
        from dfpipe.serve.gradcam import GradCamError, heatmap_images

        faces = result["faces"]
        spent = 0.0  # drawing time only, not the time given way to analyses
        try:
            cam = self._gradcam()
            for first in range(0, len(faces), self.gradcam_batch):
                while self.busy() and not self.stopping.is_set():  # verdicts come first
                    time.sleep(YIELD_S)
                if self.stopping.is_set():
                    raise JobStopped
                start = time.perf_counter()
                chunk = faces[first:first + self.gradcam_batch]
                crops = [read_rgb(folder / f"face_{f['index']:04d}.jpg") for f in chunk]
                with self.analyzer.model_lock:
                    images = heatmap_images(cam, crops, [f["call"] == "fake" for f in chunk])
                for face, data in zip(chunk, images, strict=True):
                    (folder / f"cam_{face['index']:04d}.jpg").write_bytes(data)
                    face["heatmap"] = True
                spent += time.perf_counter() - start
                self.store.update(job_id, done=first + len(chunk), total=len(faces))
        except JobStopped:
            for face in faces:
                face.pop("heatmap", None)
                (folder / f"cam_{face['index']:04d}.jpg").unlink(missing_ok=True)
            return {"available": False, "reason": HEATMAPS_CUT}
        except (GradCamError, PipelineError) as exc:
            log.warning("job %s: no heatmaps: %s", job_id, exc)
            return {"available": False, "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the verdict is kept whatever happens here
            log.exception("job %s: Grad-CAM failed", job_id)
            return {"available": False, "reason": f"Grad-CAM failed ({type(exc).__name__})"}
        return {"available": True, "layer": cam.layer_name,
                "explains": "the call of each face (fake: what raised P(fake); real: what "
                            "lowered it)",
                "seconds": round(spent, 4)}

    def _gradcam(self) -> Any:
        from dfpipe.serve.gradcam import GradCam

        with self._cam_lock:
            if self._cam is None:
                with self.analyzer.model_lock:
                    self._cam = GradCam(self.analyzer.model)
            return self._cam

"""What the server has done, for Prometheus: uploads by outcome, refusals by reason, how long
jobs wait and run, how long the model took to load, and the pool's load right now.

Each app has its own registry (not prometheus_client's global one), so several apps in one
process (the tests) never clash over metric names.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# seconds: a short clip takes a few, the default job timeout is 600
JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf"))


class Metrics:
    """The server's counters and histograms, in one registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.uploads = Counter("dfpipe_uploads", "Uploads to /api/analyze by outcome (accepted, "
                               "or the reason it was refused)", ["outcome"], registry=reg)
        self.refusals = Counter("dfpipe_refusals", "Requests refused, by reason", ["reason"],
                                registry=reg)
        self.jobs = Counter("dfpipe_jobs_finished", "Analyses finished, by status (done, error)",
                            ["status"], registry=reg)
        self.job_seconds = Histogram("dfpipe_job_duration_seconds", "Analysis time of a job, "
                                     "from leaving the queue to its verdict or error",
                                     buckets=JOB_BUCKETS, registry=reg)
        self.wait_seconds = Histogram("dfpipe_job_queue_wait_seconds", "Time a job waited in "
                                      "the queue before a worker took it", buckets=WAIT_BUCKETS,
                                      registry=reg)
        self.model_load_seconds = Gauge("dfpipe_model_load_seconds", "Time taken to load the "
                                        "model at start-up", registry=reg)
        self._load = Gauge("dfpipe_jobs_in_pool", "Jobs in the worker pool now, by state",
                           ["state"], registry=reg)

    def refused(self, reason: str, upload: bool = False) -> None:
        """Count a refusal; an upload refused is also counted as that upload's outcome."""
        self.refusals.labels(reason).inc()
        if upload:
            self.uploads.labels(reason).inc()

    def finished(self, status: str, waited_s: float, ran_s: float) -> None:
        self.jobs.labels(status).inc()
        self.wait_seconds.observe(max(0.0, waited_s))
        self.job_seconds.observe(max(0.0, ran_s))

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """Report the pool's running and queued jobs at each scrape."""
        for state in ("running", "queued"):
            self._load.labels(state).set_function(lambda s=state: stats()[s])

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The job pool's start-up: a worker says it is ready only once its warm-up has run."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from dfpipe.serve.web.jobs import WORKER_READY, JobPool


def wait_for_pool(pool: JobPool) -> None:
    pool.shutdown(timeout=10)


def test_a_worker_logs_ready_after_its_warm_up(caplog: pytest.LogCaptureFixture) -> None:
    warmed = threading.Event()
    order: list[str] = []

    def warm_up() -> None:
        order.append("warm-up")
        warmed.set()

    with caplog.at_level(logging.INFO, logger="dfpipe.serve.web.jobs"):
        pool = JobPool(lambda job, upload: None, workers=1, queue_size=1, warm_up=warm_up)
        assert warmed.wait(10)
        wait_for_pool(pool)
    ready = [r for r in caplog.records if r.getMessage() == WORKER_READY]
    assert order == ["warm-up"] and len(ready) == 1


def test_a_failed_warm_up_is_not_reported_ready(caplog: pytest.LogCaptureFixture) -> None:
    def warm_up() -> None:
        raise RuntimeError("no detector")

    with caplog.at_level(logging.INFO, logger="dfpipe.serve.web.jobs"):
        pool = JobPool(lambda job, upload: None, workers=1, queue_size=1, warm_up=warm_up)
        wait_for_pool(pool)
    messages = [r.getMessage() for r in caplog.records]
    assert "worker warm-up failed" in messages and WORKER_READY not in messages


def test_jobs_still_run_after_a_failed_warm_up(tmp_path: Path) -> None:
    done = threading.Event()

    def warm_up() -> None:
        raise RuntimeError("no detector")

    pool = JobPool(lambda job, upload: done.set(), workers=1, queue_size=1, warm_up=warm_up)
    pool.submit("job", tmp_path / "clip.mp4")
    assert done.wait(10)
    wait_for_pool(pool)

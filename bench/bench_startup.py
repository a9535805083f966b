#!/usr/bin/env python
"""Process start to ready-to-judge for the app, ONNX Runtime path against TensorFlow, as JSON.

Each start launches ``python app.py serve --workers 1`` as a fresh process (the default Xception
299 model, random weights: start-up does not depend on them) and records two moments: the
first 200 on ``GET /`` (model loaded, uploads accepted) and the worker's "ready" log line (its
face detector built and the model traced once), after which an upload is judged at once. The
second is "process start to ready-to-judge". The two runtimes are started alternately, after one
untimed start each (which fills the disk cache), so a busy spell hits both.

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_startup.py --starts 5

The ONNX run uses ``--runtime onnx`` with the .onnx beside the .h5 and ``--mtcnn-onnx`` (MTCNN
in numpy/ONNX): TensorFlow is never imported. The TF run serves the .h5 with the mtcnn package.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_app import build_model  # noqa: E402
from bench_onnx import load_average, machine  # noqa: E402

from dfpipe.core.errors import PipelineError, run_cli  # noqa: E402
from dfpipe.serve.web.jobs import WORKER_READY  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--starts", type=int, default=5, help="timed starts per runtime")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a start may take before the benchmark gives up")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the model and its exports (None: a new temp folder)")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(folder: Path) -> tuple[Path, Path]:
    """The .h5 model, its .onnx export beside it and MTCNN's ONNX networks."""
    model = folder / "xception_random.h5"
    if not model.is_file():
        model = build_model(folder, "mtcnn", 15)
    mtcnn = folder / "mtcnn_onnx"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if not model.with_suffix(".onnx").is_file():
        subprocess.run([sys.executable, "export.py", "--model", str(model), "--format", "onnx"],
                       cwd=REPO, env=env, check=True, capture_output=True)
    if not mtcnn.is_dir():
        subprocess.run([sys.executable, "export.py", "--detector", "mtcnn", "--output",
                        str(mtcnn)], cwd=REPO, env=env, check=True, capture_output=True)
    return model, mtcnn


def time_start(command: list[str], port: int, timeout: float) -> tuple[float, float]:
    """Seconds from launching ``command`` to the first 200 on ``GET /`` and to ready-to-judge
    (both that answer and the worker's ready line seen); the process is then stopped."""
    ready = threading.Event()
    tail: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    stamps: dict[str, float] = {}

    def watch() -> None:
        for line in proc.stderr:
            tail[:] = [line.strip()]
            if WORKER_READY in line and not ready.is_set():
                stamps["ready"] = time.perf_counter() - t0
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        while "listening" not in stamps or not ready.is_set():
            if time.perf_counter() - t0 > timeout:
                raise PipelineError(f"app.py was not ready within {timeout:.0f} s")
            if proc.poll() is not None:
                raise PipelineError(f"app.py exited during start-up: {' '.join(tail)}")
            if "listening" not in stamps:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as ans:
                        if ans.status == 200:
                            stamps["listening"] = time.perf_counter() - t0
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            time.sleep(0.02)
        return stamps["listening"], max(stamps["listening"], stamps["ready"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_command(runtime: str, model: Path, mtcnn: Path, port: int, instance: Path
                  ) -> list[str]:
    command = [sys.executable, "app.py", "serve", "--model", str(model), "--port", str(port),
               "--instance", str(instance), "--runtime", runtime, "--workers", "1"]
    if runtime == "onnx":
        command += ["--mtcnn-onnx", str(mtcnn)]
    return command


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bench-startup-"))
    folder.mkdir(parents=True, exist_ok=True)
    model, mtcnn = prepare(folder)
    before = load_average()
    times: dict[str, dict[str, list[float]]] = {
        name: {"listening": [], "ready": []} for name in ("onnx", "tf")}
    for round_ in range(args.starts + 1):
        for runtime, stamps in times.items():
            port = free_port()
            with tempfile.TemporaryDirectory(prefix="instance-") as instance:
                listening, ready = time_start(
                    serve_command(runtime, model, mtcnn, port, Path(instance)), port,
                    args.timeout)
            if round_ > 0:
                stamps["listening"].append(listening)
                stamps["ready"].append(ready)
    medians = {name: statistics.median(stamps["ready"]) for name, stamps in times.items()}
    report: dict[str, Any] = {
        "benchmark": "app.py serve --workers 1: process start to first 200 on GET / "
                     "(listening_s) and to the worker ready to judge (ready_s)",
        "model": "xception 299 px, random weights", "detector": "mtcnn",
        "machine": machine(), "load_average_before": before, "load_average_after": load_average(),
        "runtimes": {name: {"listening_s": [round(v, 2) for v in stamps["listening"]],
                            "ready_s": [round(v, 2) for v in stamps["ready"]],
                            "ready_median_s": round(medians[name], 2)}
                     for name, stamps in times.items()},
        "onnx_faster_x": round(medians["tf"] / medians["onnx"], 2),
        "target_onnx_s": 3.0, "onnx_meets_target": medians["onnx"] <= 3.0,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

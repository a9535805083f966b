"""`make demo`: build the offline sample dataset and run every stage on it as a user would.

Each stage is run as its own command, printed before it runs, so the demo teaches the
pipeline. The sample only proves that the pipeline runs end to end; real results need a
real dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dfpipe.core.errors import PipelineError, run_cli

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoPlan:
    """The sizes of one demo run: the default for `make demo`, a smaller one for tests."""

    sources: int = 48
    seconds: float = 2.0
    every: int = 1
    crop_size: int = 96
    model_size: int = 64
    backbone: str = "tiny"
    head_epochs: int = 2
    epochs: int = 40
    batch_size: int = 32
    patience: int = 12
    lr_patience: int = 4
    schedule: str = "plateau"  # the synthetic sample's recipe, kept whatever tiny's defaults
    augment: str = "full"
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    workers: int = 2


QUICK = DemoPlan(sources=24, seconds=2.0, every=2, epochs=25)


def _run(cmd: list[str], log: list[str]) -> None:
    shown = " ".join(shlex.quote(str(c)) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {shown}", flush=True)
    log.append(shown)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    result = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env)
    if result.returncode != 0:
        raise PipelineError(f"demo step failed (exit {result.returncode}): {shown}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_json(url: str, data: bytes | None = None, headers: dict | None = None,
               timeout: float = 30.0) -> dict:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read().decode("utf-8"))


def _multipart(field: str, path: Path) -> tuple[bytes, str]:
    boundary = "dfpipe-demo-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def check_app(model: Path, video: Path, log: list[str], timeout: float = 300.0) -> dict:
    """Start the app's server, send one video through the JSON API, return its result."""
    port = _free_port()
    cmd = [sys.executable, "app.py", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port)]
    shown = " ".join(shlex.quote(str(c)) for c in cmd).replace(sys.executable, "python")
    print(f"\n$ {shown} &   # then: curl -F video=@{video.name} .../api/analyze", flush=True)
    log.append(shown)
    server = subprocess.Popen(cmd, cwd=REPO, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise PipelineError("the app stopped: "
                                    + server.stderr.read().decode(errors="replace")[-500:])
            try:
                _http_json(f"{base}/api/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise PipelineError("the app did not start in time") from None
                time.sleep(0.5)
        body, ctype = _multipart("video", video)
        job = _http_json(f"{base}/api/analyze", body, {"Content-Type": ctype})
        job_id = job.get("job_id") or job.get("id")
        while True:
            state = _http_json(f"{base}/api/jobs/{job_id}")
            if state.get("verdict"):  # polls carry the verdict; the result has its own URL
                state["result"] = _http_json(f"{base}{state['result_url']}")["result"]
                return state
            if state.get("status") in ("done", "error"):
                return state
            if time.monotonic() > deadline:
                raise PipelineError("the app did not finish the sample video in time")
            time.sleep(0.5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _verdict(state: dict) -> tuple[str, float | None]:
    result = state.get("result") or {}
    if "verdict" not in result:
        raise PipelineError(f"the app gave no verdict: {state.get('message') or state}")
    return str(result["verdict"]), result.get("score")


def run_demo(out: Path, plan: DemoPlan = DemoPlan(), app_check: bool = True) -> dict:
    """Run every stage on a fresh sample under ``out``; return where everything went."""
    out = Path(out).resolve()
    py = sys.executable
    dataset, pre, split = out / "dataset", out / "preprocessed", out / "preprocessed_split"
    models, results = out / "models", out / "evaluation_results"
    log: list[str] = []
    start = time.monotonic()
    print("dfpipe demo: a synthetic sample that only proves the pipeline runs; real results "
          "need a real dataset.", flush=True)
    _run([py, "-m", "dfpipe.sample.dataset", dataset, "--sources", plan.sources,
          "--seconds", plan.seconds], log)
    _run([py, "preprocess.py", "--input", dataset, "--output", pre, "--detector", "mtcnn",
          "--every", plan.every, "--size", plan.crop_size, "--workers", plan.workers,
          "--overwrite"], log)
    _run([py, "split.py", "--input", pre, "--output", split, "--ratios", *plan.ratios,
          "--overwrite"], log)
    _run([py, "train.py", "--data", split, "--output", models, "--backbone", plan.backbone,
          "--weights", "none", "--size", plan.model_size, "--head-epochs", plan.head_epochs,
          "--epochs", plan.epochs, "--batch-size", plan.batch_size, "--patience", plan.patience,
          "--lr-patience", plan.lr_patience, "--schedule", plan.schedule,
          "--augment", plan.augment], log)
    model = models / f"{plan.backbone}_best.h5"
    _run([py, "evaluate.py", "--model", model, "--data", split, "--split", "test",
          "--output", results], log)
    summary = {"out": str(out), "model": str(model), "results": str(results), "commands": log}
    if app_check:
        video = sorted((dataset / "fake").glob("*.mp4"))[0]
        state = check_app(model, video, log)
        verdict, score = _verdict(state)
        summary["app"] = {"video": str(video), "label": "fake", "verdict": verdict,
                          "score": score}
        print(f"app verdict on {video.name} (a fake): {verdict}"
              + (f", P(fake) = {score:.3f}" if isinstance(score, int | float) else ""))
    summary["seconds"] = round(time.monotonic() - start, 1)
    metrics = results / "metrics.json"
    print(f"\nDone in {summary['seconds']:.0f} s.")
    print(f"Evaluation report:  {results / 'metrics_report.txt'}")
    print(f"Figures (PNG):      {results}/")
    if metrics.is_file():
        video_auc = json.loads(metrics.read_text())["videos"]["metrics"].get("roc_auc")
        if video_auc is not None:
            print(f"Video-level ROC-AUC on the sample's test split: {video_auc:.3f}")
    print(f"Start the app on this model:\n  python app.py --model {model}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m dfpipe.sample.demo", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("demo_output"),
                        help="folder for the sample dataset and every stage's output")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller sample and fewer epochs (what the tests run)")
    parser.add_argument("--no-app", action="store_true",
                        help="skip the check that the app answers on a sample video")
    args = parser.parse_args()
    run_demo(args.output, QUICK if args.quick else DemoPlan(), app_check=not args.no_app)
    return 0


if __name__ == "__main__":
    run_cli(main)

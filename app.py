"""Stage 5: judge new videos with a trained detector, from a web page, a JSON API or in batches.

    python app.py --model models/xception_best.h5                 (serve: page + API)
    python app.py predict clips/ other.mp4 --out results.csv      (batch, no server)

Both run the same inference as evaluate: frames sampled, faces found and cropped as preprocess
did (settings from the model's metadata), crops scored in batches, frame scores combined per
video, and the model's own threshold. The server is waitress (a production WSGI server), with
a bounded job queue, results kept in SQLite under --instance (one server per folder, old jobs
deleted by --keep-jobs/--keep-days), and uploads deleted once read. Each upload's work is
bounded by what is decoded (--max-frames, --max-faces, --max-frame-pixels, --job-timeout);
only MP4/MOV, Matroska/WebM, AVI and MPEG-TS containers reach the decoder; only the page
served here (or a client that is not a browser) may post, on the host names in --allowed-host.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from dfpipe.core.errors import PipelineError, add_debug_option, run_cli
from dfpipe.extract.faces import DETECTORS
from dfpipe.models.onnxrun import RUNTIMES
from dfpipe.models.precision import add_precision_option
from dfpipe.scoring import crops as scoring
from dfpipe.serve.frames import DEFAULT_MAX_PIXELS, Limits
from dfpipe.serve.web.config import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, WebConfig
from dfpipe.serve.web.preflight import check_all

COMMANDS = ("serve", "predict")
TOKEN_ENV = "DFPIPE_API_TOKEN"


def _analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=Path("models/xception_best.h5"),
                   help="model written by train.py (its metadata gives the crop settings, "
                        "threshold and class order)")
    p.add_argument("--detector", choices=list(DETECTORS), default=None,
                   help="face detector; None: the one the model's crops were made with")
    p.add_argument("--aggregate", choices=list(scoring.AGGREGATORS), default=None,
                   help="how crop scores become a video score; None: the rule stored with "
                        "the model (train.py --aggregate), mean for models that store none")
    p.add_argument("--threshold", type=float, default=None,
                   help="P(fake) at or above which a video is FAKE; None: the video-level "
                        "threshold stored with the model (chosen on validation videos with "
                        "its rule; older models: their crop-level one, with a notice)")
    p.add_argument("--every", type=int, default=None,
                   help="score every Nth frame; None: the sampling of the training crops")
    p.add_argument("--frames", type=int, default=None,
                   help="score N evenly spaced frames instead of every Nth")
    p.add_argument("--batch-size", type=int, default=scoring.DEFAULT_BATCH_SIZE,
                   help="crops per model call")
    p.add_argument("--detect-max-side", type=int, default=None,
                   help="detect faces on a copy of each frame no larger than this many pixels "
                        "(crops are still cut from the full frame; a frame where the copy shows "
                        "no face is searched again at full size; 0: full size); None: the "
                        "model's preprocess setting, else preprocess's default")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="auto: by the model file (.h5 TensorFlow; .onnx ONNX Runtime, with "
                        "MTCNN's exported networks for faces, never importing TensorFlow); "
                        "onnx: the export beside a .h5 (python export.py --model M.h5); tf")
    p.add_argument("--mtcnn-onnx", type=Path, default=None,
                   help="folder of MTCNN's exported networks (python export.py --detector "
                        "mtcnn): the ONNX runtime always finds faces with them (None: "
                        "models/mtcnn_onnx); given with the TF runtime, they replace the mtcnn "
                        "package there too (same boxes, faster)")
    add_precision_option(p)
    p.add_argument("--tta", choices=scoring.TTA_MODES, default=None,
                   help="test-time augmentation: flip scores each crop as the mean of it and "
                        "its mirror image (twice the model calls); None: the model's operating "
                        "point's, else none")
    defaults = WebConfig()
    p.add_argument("--max-frames", type=int, default=defaults.max_frames,
                   help="frames decoded per video, whatever its header claims; a longer video "
                        "is judged on its first N frames and the result says so")
    p.add_argument("--max-faces", type=int, default=defaults.max_faces,
                   help="face crops scored per video; beyond that the video is judged on the "
                        "first N crops and the result says so")
    add_debug_option(p)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = WebConfig()
    serve = sub.add_parser("serve", formatter_class=fmt,
                           help="serve the upload page and the JSON API (the default)")
    _analysis_options(serve)
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help="interface to listen on (0.0.0.0 exposes the server to the network)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    serve.add_argument("--instance", type=Path, default=defaults.instance,
                       help="folder for the SQLite store, face images and transient uploads; "
                            "one server per folder (a second one is refused)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="another host name clients may use in the Host header (repeat for "
                            "several); the bound address and localhost are always allowed, "
                            "other names get 400 (DNS rebinding)")
    serve.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb,
                       help="largest upload accepted, enforced while the body is read (larger: "
                            "413, before it is stored)")
    serve.add_argument("--max-duration", type=float, default=defaults.max_duration_s,
                       help="longest video accepted by its header, in seconds (longer: 422); "
                            "headers can lie, so --max-frames bounds what is decoded")
    serve.add_argument("--max-frame-pixels", type=int, default=defaults.max_frame_pixels,
                       help="largest frame accepted, in pixels, checked on the first frame "
                            "(422) and on every frame decoded (the job fails); 33177600 is 8K UHD")
    serve.add_argument("--job-timeout", type=float, default=defaults.job_timeout_s,
                       help="wall-clock seconds one analysis may take; beyond that the job "
                            "fails with a message")
    serve.add_argument("--keep-jobs", type=int, default=defaults.keep_jobs,
                       help="finished jobs kept (results and images); older ones are deleted "
                            "at start and after each job")
    serve.add_argument("--keep-days", type=float, default=defaults.keep_days,
                       help="days a finished job is kept, at most")
    serve.add_argument("--workers", type=int, default=defaults.workers,
                       help="videos analysed at the same time")
    serve.add_argument("--queue-size", type=int, default=defaults.queue_size,
                       help="videos allowed to wait; beyond that the API answers 503 before "
                            "the upload is stored")
    serve.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help="waitress threads answering HTTP requests")
    serve.add_argument("--connection-limit", type=int, default=defaults.connection_limit,
                       help="open connections waitress keeps at once (a slow or half-sent "
                            "request holds one socket, not a thread); beyond that new ones "
                            "wait in the listen backlog")
    serve.add_argument("--channel-timeout", type=int, default=defaults.channel_timeout_s,
                       help="seconds a connection may stay silent (mid-request included) "
                            "before it is closed")
    serve.add_argument("--no-gradcam", action="store_true",
                       help="do not draw Grad-CAM heatmaps (verdicts are unchanged)")
    serve.add_argument("--token", default=None,
                       help=f"require this API token (or set ${TOKEN_ENV}); None: an open API")
    predict = sub.add_parser("predict", formatter_class=fmt,
                             help="judge videos without a server, one row per video")
    predict.add_argument("inputs", nargs="+", type=Path, metavar="VIDEO_OR_FOLDER",
                         help="video files, or folders searched recursively for videos")
    _analysis_options(predict)
    predict.add_argument("--out", type=Path, default=Path("results.csv"),
                         help="table to write: .csv (one row per video) or .json (rows plus "
                              "each video's frames and faces)")
    return parser.parse_args(argv)


def _limits(args: argparse.Namespace) -> Limits:
    try:
        return Limits(args.max_frames, args.max_faces, DEFAULT_MAX_PIXELS)
    except ValueError as exc:
        raise PipelineError(f"--{str(exc).replace('_', '-')}") from None


def _analyzer(args: argparse.Namespace):
    from dfpipe.serve.analyzer import Analyzer

    return Analyzer.load(args.model, detector=args.detector, aggregate=args.aggregate,
                         threshold=args.threshold, every=args.every, frames=args.frames,
                         batch_size=args.batch_size, tta=args.tta,
                         detect_max_side=args.detect_max_side, runtime=args.runtime,
                         mtcnn_onnx=args.mtcnn_onnx, precision=args.precision)


def serve(args: argparse.Namespace) -> int:
    import waitress

    from dfpipe.serve.web import create_app
    from dfpipe.serve.web.app import server_options
    from dfpipe.serve.web.instancelock import InstanceLock

    try:
        config = WebConfig.from_mapping({
            "model": args.model, "instance": args.instance, "max_upload_mb": args.max_upload_mb,
            "max_duration_s": args.max_duration, "max_frame_pixels": args.max_frame_pixels,
            "max_frames": args.max_frames, "max_faces": args.max_faces,
            "job_timeout_s": args.job_timeout, "keep_jobs": args.keep_jobs,
            "keep_days": args.keep_days, "host": args.host,
            "allowed_hosts": args.allowed_host,
            "workers": args.workers, "queue_size": args.queue_size,
            "gradcam": not args.no_gradcam, "connection_limit": args.connection_limit,
            "channel_timeout_s": args.channel_timeout,
            "api_token": args.token or os.environ.get(TOKEN_ENV) or None})
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    check_all(args.host, args.port, config.instance, config.connection_limit)
    InstanceLock(config.instance.resolve()).release()  # refuse before loading the model
    start = time.perf_counter()
    analyzer = _analyzer(args)
    app = create_app(config, analyzer, model_load_s=time.perf_counter() - start)
    model = app.extensions["dfpipe"].analyzer.describe()
    print(f"model {model['name']} ({model['backbone']}), threshold {model['threshold']:.4f}, "
          f"faces by {model['detector']}; {model['crop_source']}")
    try:
        try:
            server = waitress.create_server(app, host=args.host, port=args.port,
                                            threads=args.threads, **server_options(config))
        except OSError as exc:  # taken between the check and now
            raise PipelineError(f"cannot listen on {args.host}:{args.port} "
                                f"({exc.strerror or exc}): choose another --port") from None
        print(f"serving on http://{args.host}:{args.port}/ (results in {args.instance}; "
              f"API token {'required' if config.api_token else 'off'}); Ctrl+C stops",
              flush=True)
        signal.signal(signal.SIGTERM, _stop)
        server.run()  # returns on Ctrl+C or SIGTERM (waitress closes its sockets)
    finally:
        app.extensions["dfpipe"].shutdown()
    print("stopped: a running analysis was failed with a message, finished results are kept",
          flush=True)
    return 0


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (a supervisor's stop) ends the server the way Ctrl+C does: cleanly."""
    raise KeyboardInterrupt


def predict(args: argparse.Namespace) -> int:
    from dfpipe.serve.batch import find_videos, predict_videos

    videos = find_videos(args.inputs)
    if args.out.suffix.lower() not in (".csv", ".json"):
        raise PipelineError(f"--out must end in .csv or .json, not {args.out.name}")
    if args.out.is_dir():
        raise PipelineError(f"--out {args.out} is a folder: give a file name ending in .csv "
                            "or .json")
    limits = _limits(args)
    analyzer = _analyzer(args)
    if analyzer.crop_unknown:
        print(f"note: {analyzer.crop_notice}")
    rows = predict_videos(analyzer, videos, args.out, limits)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    print(f"{len(rows)} videos: {summary}; written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return serve(args) if args.command == "serve" else predict(args)


if __name__ == "__main__":
    run_cli(main)

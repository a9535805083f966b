"""Watch a preprocessing or training run from a second terminal.

Reads only what the stages already write: the manifests and run files of preprocess.py
(all shards combined, a line per shard), or the training log of train.py. Refreshes in
place on a terminal, prints plain lines otherwise, and exits when the run is done.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfpipe.core.errors import PipelineError, add_debug_option, run_cli
from dfpipe.monitor.snapshot import DEFAULT_WINDOW_MIN
from dfpipe.monitor.watch import DEFAULT_INTERVAL_S, watch

EPILOG = """\
what it shows:
  preprocess output (manifest*.jsonl): videos done / total, faces saved, videos with no face
  and with errors by reason, videos/min and sampled frames/s over the last --window minutes
  and overall, time left. Totals and time left need the run file(s) preprocess.py writes.
  training output (training_log.csv): epochs completed, latest train/val metrics, best epoch
  (highest val_auc, else lowest val_loss).
  a missing or empty folder: "waiting for <folder>...", polled until something appears.

exit status:
  0  a snapshot was shown (--once), or the run finished (preprocess: every shard's run file
     says finished or all videos are done; training: training_done.json exists)
  1  --once and there is nothing to monitor yet (folder missing, or no manifest/log in it)
  2  bad arguments
  Ctrl-C stops watching (status 0); the run being watched is not affected.
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show every default, and keep the epilog's layout."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("folder", type=Path,
                        help="a preprocess output folder (manifests) or a training output "
                             "folder (training_log.csv)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                        help="seconds between refreshes")
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW_MIN,
                        help="minutes of recent work the 'recent' throughput and time left use")
    parser.add_argument("--once", action="store_true",
                        help="print one snapshot and exit instead of watching")
    parser.add_argument("--json", action="store_true",
                        help="print snapshots as JSON (one object per line) for scripts")
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.interval <= 0:
        raise PipelineError(f"--interval must be > 0 seconds, got {args.interval}")
    if args.window <= 0:
        raise PipelineError(f"--window must be > 0 minutes, got {args.window}")
    if args.folder.exists() and not args.folder.is_dir():
        raise PipelineError(f"{args.folder} is a file; give the output folder of preprocess.py "
                            "or train.py")
    try:
        return watch(
            args.folder, interval=args.interval, window_s=args.window * 60, once=args.once,
            as_json=args.json, out=sys.stdout, live=sys.stdout.isatty() and not args.json,
        )
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    run_cli(main)

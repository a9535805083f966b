"""User-facing errors: one clear line, never a traceback, from every stage script."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem the user can fix (bad path, missing weights, wrong model file)."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a stage's main(), turning PipelineError into 'error: ...' and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def first_line(exc: BaseException | Warning | str) -> str:
    """The first line of an exception's message (its type name when it has none), for the
    one-line messages a library error is turned into."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""User-facing errors: one clear line, never a traceback, from every stage script.

Exit codes: 2 when the input or the options are wrong (the user fixes the command line), 1 when
an accepted run fails (a full disk, a file that breaks half-way), 130 when interrupted. Any
exception the library did not foresee still becomes one line naming it; ``--debug`` (on every
script) shows the full traceback for a bug report.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

DEBUG_FLAG = "--debug"
USAGE = 2
FAILED = 1
INTERRUPTED = 130
# a path that is missing, of the wrong kind or not readable: the command line is what to fix
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class PipelineError(Exception):
    """A problem the user can fix (bad path, missing weights, wrong model file): exit 2."""

    exit_code = USAGE


class RunFailed(PipelineError):
    """The input was accepted but the run could not finish (disk full, device lost): exit 1."""

    exit_code = FAILED


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """The ``--debug`` switch :func:`run_cli` reads, listed in ``--help``."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="on an error, show the full traceback instead of one line")


def describe(exc: BaseException) -> str:
    """One line naming an unforeseen failure: the file involved when there is one."""
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or str(exc).splitlines()[0]
        return f"cannot use {exc.filename}: {reason}"
    if isinstance(exc, PermissionError):
        return f"permission denied ({str(exc).splitlines()[0]}): fix the file's permissions"
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def fail(message: str, code: int) -> None:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a stage's main(): PipelineError -> one line and its exit code (2 usage, 1 failed
    run); any other exception -> one line naming it, exit 1; ``--debug`` -> the traceback."""
    debug = DEBUG_FLAG in sys.argv[1:]
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main()
    except PipelineError as exc:
        if debug:
            traceback.print_exc()
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume",
              file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if debug:
            traceback.print_exc()
        code = USAGE if isinstance(exc, PATH_ERRORS) else FAILED
        fail(f"{describe(exc)} (run again with {DEBUG_FLAG} for the traceback)", code)
    sys.exit(code or 0)


def first_line(exc: BaseException | Warning | str) -> str:
    """The first line of an exception's message (its type name when it has none), for the
    one-line messages a library error is turned into."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""One server per instance folder: two would close and delete each other's jobs and uploads.

The lock is an ``fcntl`` lock on ``server.lock``, so it goes away with the process that held
it (a crash leaves no stale lock); the file keeps the holder's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dfpipe.core.errors import PipelineError

LOCK_NAME = "server.lock"


class InstanceLock:
    """Held from creation until :meth:`release`; a second holder is refused at once."""

    def __init__(self, instance: Path) -> None:
        self.path = Path(instance) / LOCK_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PipelineError(f"the instance folder {instance} is a file: give a folder "
                                "with --instance") from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise PipelineError(
                f"another server (pid {holder}) is already using the instance folder "
                f"{self.path.parent}: stop it, or start this one with another --instance"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd: int | None = fd

    def release(self) -> None:
        """Let another server use the folder (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

"""Checks run before the model is loaded: a server that cannot listen should say so in one line
at once, not after a minute of loading weights and then with a traceback."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

from dfpipe.core.errors import PipelineError

FD_MARGIN = 64  # descriptors beyond the connections: the model, the store, logs, uploads


def check_host(host: str) -> None:
    """The host must be an address or a name this machine can resolve (256.1.1.1 is neither)."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise PipelineError(f"--host {host!r} is not an address or a name this machine can "
                            f"resolve ({exc}): use e.g. 127.0.0.1, or 0.0.0.0 for every "
                            "interface") from None


def check_port(host: str, port: int) -> None:
    """Bind and release the port the way waitress will, so 'in use' is known up front."""
    if not 0 <= port <= 65535:
        raise PipelineError(f"--port {port} is not a TCP port (0-65535)")
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise PipelineError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                                "another program uses the port; choose another --port, or "
                                "stop that program") from None


def check_instance(instance: Path) -> None:
    """The instance folder must be a folder (or creatable as one) this process can write."""
    instance = Path(instance)
    for parent in (instance, *instance.parents):
        if parent.exists():
            break
    if not parent.is_dir():
        raise PipelineError(f"--instance {instance}: {parent} is a file, not a folder; give a "
                            "folder for the job store (it is created when missing)")
    try:
        instance.mkdir(parents=True, exist_ok=True)
        probe = instance / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"--instance {instance} is not a writable folder "
                            f"({exc.strerror or exc}): give one this user can write") from None


def check_descriptors(connection_limit: int) -> None:
    """Make room for ``connection_limit`` sockets: raise the soft open-file limit up to the hard
    one when needed, or refuse with the figure to give ``ulimit -n``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = connection_limit + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard == resource.RLIM_INFINITY or hard >= need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        else:
            raise PipelineError(f"--connection-limit {connection_limit} needs {need} open "
                                f"files, this process may open {hard}: lower the limit or "
                                f"raise it with 'ulimit -n {need}'")


def check_all(host: str, port: int, instance: Path, connection_limit: int) -> None:
    """Every check, cheapest first."""
    check_host(host)
    check_port(host, port)
    check_instance(instance)
    check_descriptors(connection_limit)

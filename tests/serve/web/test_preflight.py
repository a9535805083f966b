"""Start-up checks, in-process: each refusal is a PipelineError naming the option to change,
and the open-file limit is raised to fit --connection-limit when the hard limit allows."""

from __future__ import annotations

import resource
import socket

import pytest

from dfpipe.core.errors import PipelineError
from dfpipe.serve.web import preflight
from dfpipe.serve.web.instancelock import InstanceLock


def test_host_must_resolve():
    preflight.check_host("127.0.0.1")
    preflight.check_host("localhost")
    with pytest.raises(PipelineError, match="--host '256.1.1.1'"):
        preflight.check_host("256.1.1.1")


def test_port_in_use_and_out_of_range():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PipelineError, match=f"127.0.0.1:{port}.*--port"):
            preflight.check_port("127.0.0.1", port)
    preflight.check_port("127.0.0.1", port)  # free again
    with pytest.raises(PipelineError, match="not a TCP port"):
        preflight.check_port("127.0.0.1", 70000)


def test_instance_must_be_a_folder(tmp_path):
    preflight.check_instance(tmp_path / "new" / "instance")
    assert (tmp_path / "new" / "instance").is_dir()
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(PipelineError, match="is a file"):
            preflight.check_instance(path)
        with pytest.raises(PipelineError, match="is a file"):
            InstanceLock(path)


def test_the_open_file_limit_is_raised_to_fit_or_refused(monkeypatch):
    calls = []
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: calls.append(limits))
    preflight.check_descriptors(1000)
    assert calls == [(1000 + preflight.FD_MARGIN, 4096)]
    with pytest.raises(PipelineError, match="ulimit -n"):
        preflight.check_descriptors(5000)

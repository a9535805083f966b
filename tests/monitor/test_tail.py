"""Growing manifests are read a new line at a time, never half a line."""

from __future__ import annotations

import json
import os

from monitor_support import NOW, record

from dfpipe.core.manifest import append_record, manifest_name
from dfpipe.monitor.snapshot import (
    take_snapshot,
)
from dfpipe.monitor.tail import ManifestTail


def test_a_half_written_last_line_is_ignored_until_complete(tmp_path):
    path = tmp_path / manifest_name(None)
    for i in range(3):
        append_record(path, record(f"v{i}", finished=NOW - 10))
    line = json.dumps(record("v3", finished=NOW - 1)) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:25])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 3
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[25:])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 4


def test_polls_sharing_a_tail_read_only_new_lines_and_restart_on_a_new_file(tmp_path):
    path = tmp_path / manifest_name(None)
    tail = ManifestTail()
    append_record(path, record("v0", finished=NOW - 10))
    line = json.dumps(record("v1", status="no_face", finished=NOW)) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[:30])
    assert take_snapshot(tmp_path, now=NOW, tail=tail).overall.done == 1
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line[30:])
    append_record(path, record("v0", status="error", finished=NOW))   # v0 again: latest wins
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.ok, p.no_face, p.error) == (2, 0, 1, 1)
    tmp = path.with_name("new.tmp")                                    # a fresh run replaces it
    tmp.write_text(json.dumps(record("w0", finished=NOW)) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.ok) == (1, 1)
    with open(path, "r+", encoding="utf-8") as fh:          # rewritten in place, same inode
        fh.write("\n".join(json.dumps(record(f"x{i}", "error", finished=NOW)) for i in range(3)))
        fh.write("\n")
    p = take_snapshot(tmp_path, now=NOW, tail=tail).overall
    assert (p.done, p.error) == (3, 3)


def test_a_last_line_cut_inside_a_multibyte_character_does_not_crash(tmp_path):
    path = tmp_path / manifest_name(None)
    append_record(path, record("v0", finished=NOW - 10))
    torn = (json.dumps(record("видео", finished=NOW), ensure_ascii=False)).encode()
    cut = torn.index("видео".encode()) + 1                      # inside the first 2-byte char
    with open(path, "ab") as fh:
        fh.write(torn[:cut])
    assert take_snapshot(tmp_path, now=NOW).overall.done == 1

from dfpipe.core.manifest import append_record, iter_records, manifest_name, read_manifests


def test_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_record(path, {"video_id": "a", "status": "ok"})
    with open(path, "a") as fh:
        fh.write('{"video_id": "b", "sta')
    assert [r["video_id"] for r in iter_records(path)] == ["a"]


def test_shards_are_read_together_latest_wins(tmp_path):
    append_record(tmp_path / manifest_name((0, 2)), {"video_id": "a", "status": "error"})
    append_record(tmp_path / manifest_name((1, 2)), {"video_id": "b", "status": "ok"})
    append_record(tmp_path / manifest_name((0, 2)), {"video_id": "a", "status": "ok"})
    recs = {r["video_id"]: r["status"] for r in read_manifests(tmp_path)}
    assert recs == {"a": "ok", "b": "ok"}
    assert manifest_name(None) == "manifest.jsonl"

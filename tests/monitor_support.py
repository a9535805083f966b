"""Helpers shared by the tests of one package."""
from __future__ import annotations

import json
from pathlib import Path

from dfpipe.core.manifest import append_record, manifest_name, run_file_name

NOW = 1_000_000.0


STARTED = NOW - 600.0


def record(vid: str, status: str = "ok", faces: int = 1, frames: int = 30,
           seconds: float = 5.0, finished: float | None = None, message: str = "") -> dict:
    """A manifest record with the fields the monitor reads (plus a few it ignores)."""
    rec = {"video_id": vid, "label": "real", "status": status, "message": message,
           "faces_saved": faces, "frames_sampled": frames, "seconds": seconds,
           "crops": [], "relpath": f"real/{vid}.mp4"}
    if finished is not None:
        rec["finished"] = finished
    return rec


def write_run(folder: Path, total: int, shard: tuple[int, int] | None = None,
              started: float = STARTED, finished: float | None = None) -> None:
    data = {"total": total, "shard": list(shard) if shard else None, "started": started,
            "finished": finished, "detector": "mtcnn", "settings": {}}
    (folder / run_file_name(shard)).write_text(json.dumps(data), encoding="utf-8")


def known_run(folder: Path) -> None:
    """10 of 20 videos done in the 600 s since start, 6 of them in the last 300 s."""
    offsets = [50, 100, 150, 200, 320, 380, 440, 500, 560, 590]
    kinds = (["ok"] * 6 + ["no_face"] * 3 + ["error"])
    faces = [3, 5, 2, 4, 6, 1, 0, 0, 0, 0]
    messages = [""] * 6 + ["no face found", "no face found", "video too dark", "cannot decode"]
    order = [0, 6, 1, 2, 7, 3, 8, 4, 9, 5]  # statuses interleaved in time
    path = folder / manifest_name(None)
    for slot, i in enumerate(order):
        append_record(path, record(f"v{i:02d}", kinds[i], faces[i], 30, 5.0,
                                   STARTED + offsets[slot], messages[i]))
    write_run(folder, total=20)


def write_log(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_log.csv").write_text(text, encoding="utf-8")


LOG = ("epoch,auc,loss,val_auc,val_loss,learning_rate\n"
       "0,0.70,0.65,0.72,0.60,0.001\n"
       "1,0.80,0.50,0.85,0.45,0.001\n"
       "2,0.86,0.40,0.81,0.47,0.0005\n")

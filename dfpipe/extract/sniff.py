"""Which files may reach FFmpeg: media containers recognised from their leading bytes.

OpenCV hands any file to FFmpeg, which probes dozens of formats, among them text formats
that open other files (a concat list, an HLS playlist, an image sequence pattern). A file
whose first bytes are not one of the containers below is refused before OpenCV opens it,
whatever its extension says.
"""

from __future__ import annotations

from pathlib import Path

CONTAINERS = ("MP4/MOV", "Matroska/WebM", "AVI", "MPEG-TS")
HEAD_BYTES = 3 * 188 + 1
MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
EBML = b"\x1a\x45\xdf\xa3"
TS_PACKET = 188
TS_SYNC = 0x47


def sniff(head: bytes) -> str | None:
    """The container named by these leading bytes, or None when it is not allowed."""
    if len(head) >= 8 and head[4:8] in MP4_BOXES:
        return "MP4/MOV"
    if head[:4] == EBML:
        return "Matroska/WebM"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "AVI"
    if len(head) >= 2 * TS_PACKET + 1 and all(
            head[i] == TS_SYNC for i in range(0, len(head), TS_PACKET)):
        return "MPEG-TS"
    return None


def container_of(path: Path) -> str | None:
    """The allowed container of a file (read from its first bytes), or None."""
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))


def refusal() -> str:
    """The one line said about a file that is not an allowed container."""
    return (f"the file cannot be opened as a video: its first bytes are not a supported "
            f"container ({', '.join(CONTAINERS)})")

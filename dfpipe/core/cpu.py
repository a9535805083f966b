"""What this CPU can do natively, read from /proc/cpuinfo (training and inference precision)."""

from __future__ import annotations

from pathlib import Path


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU flags list native bf16 arithmetic (avx512_bf16 or amx_bf16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False

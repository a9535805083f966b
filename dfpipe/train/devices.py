"""Which precision and which tf.distribute strategy a training run uses on this machine.

``--precision auto`` must pick right on every machine: float16 on a GPU, bfloat16 only where
the CPU has native bf16 arithmetic (elsewhere it is emulated and slower than float32).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError

PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def choose_precision(requested: str, has_gpu: bool, cpu_has_bf16: bool) -> str:
    """The Keras dtype policy for ``requested``: 'auto' is float16 on a GPU, bfloat16 on a CPU
    with native bf16 (AVX512-BF16 / AMX), float32 otherwise."""
    if requested not in PRECISIONS:
        raise PipelineError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if has_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16 else "float32"


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


def gpu_count() -> int:
    """GPUs TensorFlow can see."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Set Keras' global dtype policy for the block, then put the previous one back."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def strategy_kind(gpus: int, tf_config: str | None) -> str:
    """'multi_worker' when TF_CONFIG names a cluster, 'mirrored' on several GPUs, else 'default'."""
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
        except (json.JSONDecodeError, AttributeError):
            raise PipelineError("TF_CONFIG is not valid JSON: fix or unset it") from None
        if cluster:
            return "multi_worker"
    return "mirrored" if gpus > 1 else "default"


def make_strategy(kind: str) -> Any:
    """The tf.distribute strategy for a kind from :func:`strategy_kind`."""
    import tensorflow as tf

    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(tf_config: str | None) -> bool:
    """Whether this process writes the outputs (the chief, or worker 0 without a chief)."""
    if not tf_config:
        return True
    spec = json.loads(tf_config)
    task = spec.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in spec.get("cluster", {})

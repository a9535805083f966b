"""Which precision and which tf.distribute strategy a training run uses on this machine.

``--precision auto`` must pick right on every machine: bfloat16 on GPUs of compute capability
8.0 and newer (A100, H100, H200: same range as float32, no loss scaling), float16 on older
GPUs, bfloat16 on a CPU only where it has native bf16 arithmetic (AVX-512 BF16 or AMX;
elsewhere it is emulated and slower than float32), float32 otherwise.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from dfpipe.core.errors import PipelineError

PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


BF16_GPU = (8, 0)  # Ampere and newer: bfloat16 tensor cores


def choose_precision(requested: str, gpu_capability: tuple[int, int] | None,
                     cpu_has_bf16: bool) -> str:
    """The Keras dtype policy for ``requested``: 'auto' is bfloat16 on GPUs of compute
    capability 8.0 or newer and float16 on older ones (``gpu_capability`` is the lowest of the
    machine's GPUs, None without one), bfloat16 on a CPU with native bf16, float32 otherwise."""
    if requested not in PRECISIONS:
        raise PipelineError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if gpu_capability is not None:
        return "mixed_bfloat16" if tuple(gpu_capability) >= BF16_GPU else "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16 else "float32"


def gpu_capability() -> tuple[int, int] | None:
    """The lowest compute capability among the GPUs TensorFlow sees (None without a GPU; a
    GPU that does not report one counts as pre-Ampere)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability") or (0, 0)))
    return min(found) if found else None


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


def worker_shard(tf_config: str | None) -> tuple[int, int] | None:
    """(workers, this worker's index) of a multi-worker cluster in TF_CONFIG, for sharding
    the input files before they are decoded; None for a single machine."""
    if not tf_config:
        return None
    spec = json.loads(tf_config)
    cluster = spec.get("cluster", {})
    members = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind, [])))]
    if len(members) < 2:
        return None
    task = spec.get("task", {})
    me = (task.get("type", "chief"), int(task.get("index", 0)))
    return (len(members), members.index(me)) if me in members else None

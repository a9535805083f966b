"""The Keras pieces of the epoch loop: per-epoch reseeding, one-epoch fits, the learning
rate in the logs, TensorBoard, and tf.data errors turned into one-line messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dfpipe.core.errors import PipelineError

TENSORBOARD_DIR = "tensorboard"


def reseed(model: Any, seed: int, epoch: int) -> None:
    """Set every random layer's generator (dropout) from (seed, epoch), so a resumed epoch
    draws what it would have drawn in a run never killed."""
    import keras

    layers, i = [model], 0
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                start = np.random.default_rng([seed, epoch, i]).integers(0, 2**31, 2)
                value.state.assign(np.asarray(start, dtype=value.state.dtype))
                i += 1


def keras_tensorboard(out: Path) -> Any:
    """TensorBoard epoch summaries under ``out``."""
    import keras

    return keras.callbacks.TensorBoard(str(out / TENSORBOARD_DIR), write_graph=False)


def one_epoch() -> Any:
    """Stop ``fit`` after one epoch: each epoch gets its own draw of crops, while Keras still
    shows the epoch as k/total."""
    import keras

    class OneEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.model.stop_training = True

    return OneEpoch()


def learning_rate_to_logs() -> Any:
    """A callback putting the epoch's learning rate in the logs as ``lr`` (CSVLogger's column)."""
    import keras

    class LearningRateToLogs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                rate = self.model.optimizer.learning_rate
                logs["lr"] = float(keras.ops.convert_to_numpy(rate))

    return LearningRateToLogs()


@contextlib.contextmanager
def pipeline_errors() -> Iterator[None]:
    """Turn an unreadable crop inside tf.data into the reader's one-line PipelineError."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as exc:
        for line in str(exc).splitlines():
            if "PipelineError: " in line:
                raise PipelineError(line.split("PipelineError: ", 1)[1].strip()) from None
        raise

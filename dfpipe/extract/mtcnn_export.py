"""Write MTCNN's three networks (P-Net, R-Net, O-Net) as ONNX, from the weights the ``mtcnn``
package ships, for :class:`dfpipe.extract.mtcnn_onnx.OnnxMTCNN`.

Why: the ``mtcnn`` package imports TensorFlow, so a detector built on it would cost the ONNX
path the seconds it exists to save. The networks are small; the numpy port of the package's
pyramid, box regression and non-maximum suppression lives beside the detectors, in extract.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dfpipe.core.errors import PipelineError
from dfpipe.core.onnxformat import ONNX_IR_VERSION, ONNX_OPSET, file_sha256
from dfpipe.extract.mtcnn_onnx import DEFAULT_MTCNN_DIR, MTCNN_INFO, NETWORKS

log = logging.getLogger(__name__)

# network -> (the package's class, its weights file, the input shape it takes)
_SOURCES: dict[str, tuple[str, str, tuple[int | None, ...]]] = {
    "pnet": ("PNet", "pnet.lz4", (None, None, None, 3)),
    "rnet": ("RNet", "rnet.lz4", (None, 24, 24, 3)),
    "onet": ("ONet", "onet.lz4", (None, 48, 48, 3)),
}


def export_mtcnn(folder: Path = DEFAULT_MTCNN_DIR) -> Path:
    """Write ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` and ``mtcnn.json`` into ``folder``;
    return the folder. The JSON is written last: a folder without it is not a finished export.
    """
    import importlib.metadata

    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MTCNN_INFO).unlink(missing_ok=True)
    start = time.perf_counter()
    files = {}
    for name in NETWORKS:
        cls_name, weights, shape = _SOURCES[name]
        net = {"PNet": PNet, "RNet": RNet, "ONet": ONet}[cls_name]()
        net.build()
        net.set_weights(load_weights(weights))
        target = folder / f"{name}.onnx"
        _write(net, shape, target)
        files[name] = {"file": target.name, "sha256": file_sha256(target), "weights": weights}
    info = {"detector": "mtcnn", "source_package": "mtcnn",
            "source_version": importlib.metadata.version("mtcnn"), "opset": ONNX_OPSET,
            "networks": files,
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = folder / f".{MTCNN_INFO}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MTCNN_INFO)
    log.info("exported MTCNN's three networks to %s (%.1f s)", folder,
             time.perf_counter() - start)
    return folder


def _write(net: Any, shape: tuple[int | None, ...], target: Path) -> None:
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    signature = [tf.TensorSpec(shape, tf.float32, name="image")]
    function = tf.function(lambda image: net(image), input_signature=signature)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            patch_tf2onnx()
            proto, _ = tf2onnx.convert.from_function(function, signature, opset=ONNX_OPSET)
    except Exception as exc:  # noqa: BLE001 - a converter failure is one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"cannot export MTCNN to {target}: {first}") from None
    proto.ir_version = ONNX_IR_VERSION
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, target)

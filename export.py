"""Export a trained detector beside its .h5: ONNX (for ONNX Runtime, no TensorFlow needed to
score), a TF SavedModel or TFLite, with the same metadata in a JSON sidecar (``x.onnx.json``).

    python export.py --model models/xception_best.h5 --format onnx
    python export.py --detector mtcnn            (MTCNN's three networks, to models/mtcnn_onnx)

The graph is float32 even for a mixed-precision model; the sidecar records the SHA-256 of the
.h5, so a stale export beside a retrained model is refused when loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dfpipe.core.errors import PipelineError, run_cli
from dfpipe.extract.mtcnn_onnx import DEFAULT_MTCNN_DIR
from dfpipe.models.export import FORMATS


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model", type=Path, default=None,
                      help="the .h5 written by train.py (e.g. models/xception_best.h5)")
    what.add_argument("--detector", choices=["mtcnn"], default=None,
                      help="export a face detector's networks instead of a model: mtcnn "
                           "writes P-Net, R-Net and O-Net (the mtcnn package's weights) as "
                           f"ONNX into --output (default {DEFAULT_MTCNN_DIR})")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="onnx: .onnx for ONNX Runtime; savedmodel: a .savedmodel folder; "
                        "tflite: .tflite at the model's input size (resize crops first)")
    p.add_argument("--output", type=Path, default=None,
                   help="where to write; default: beside --model, same name, the format's "
                        f"suffix (.onnx, .savedmodel, .tflite); for --detector, a folder "
                        f"({DEFAULT_MTCNN_DIR})")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.detector == "mtcnn":
        from dfpipe.extract.mtcnn_export import export_mtcnn

        folder = export_mtcnn(args.output or DEFAULT_MTCNN_DIR)
        print(f"exported MTCNN (P-Net, R-Net, O-Net) as ONNX to {folder}")
        return 0
    if args.model is None:
        raise PipelineError("nothing to export: give --model MODEL.h5 or --detector mtcnn")
    from dfpipe.models.export import export_model

    result = export_model(args.model, args.format, args.output)
    print(f"exported {args.model} as {result.format} to {result.path} in {result.seconds:.1f} s "
          f"(metadata {result.sidecar.name}, source sha256 {result.source_sha256[:12]})")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""Stage export_onnx: the classifier as ONNX (NCHW, batch 1), checked against onnxruntime.

In:  --classifier weights, --frames shards, --test-labels (the parity frames are the first
     export.parity_frames test frames), params.yaml (model.*, export.*)
Out: --onnx model, --metrics JSON (the parity check's verdict and its bound: every logit of
     onnxruntime within export.tolerance of torch's, on so many frames)
Fails when the difference exceeds export.tolerance. The measured difference itself goes to the
log only: onnxruntime picks its kernels by the CPU's vector ISA (AVX2 or AVX-512), so its last
bits differ between machines, and a tracked file must have the same bytes on every x86-64 CPU.
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.atomic import atomic_path, write_json
from maskinspect.errors import PipelineError
from maskinspect.model.export import export_onnx, onnx_parity
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled, shown


@cli.stage("export_onnx")
def main(args, params):
    cfg, model_cfg = params["export"], params["model"]
    model = models.build_classifier(model_cfg)
    models.load_into(model, models.load_weights(args.classifier), str(args.classifier))
    ids = read_labelled(args.test_labels)[0][: cfg["parity_frames"]]
    if not ids:
        raise PipelineError(f"{shown(args.test_labels)}: no test frames to check the ONNX model on")
    images = load_shards(args.frames).take(ids, "test frame")
    with atomic_path(args.onnx, suffix=".onnx") as tmp:  # renamed into place only when it passes
        export_onnx(model, model_cfg["input_size"], tmp, cfg["opset"])
        parity = onnx_parity(model, tmp, images, model_cfg["input_size"])
        if parity.max_abs_diff > cfg["tolerance"]:
            raise PipelineError(f"{args.onnx}: ONNX logits differ from torch by {parity.max_abs_diff:.3g} > "
                                f"export.tolerance {cfg['tolerance']:g}")
    # Within the tolerance, a frame whose top two logits are further apart than twice the tolerance
    # has the same class in both: the verdict implies the argmax agreement that matters.
    write_json(args.metrics, {"frames": parity.frames, "logits_within_tolerance": True,
                              "tolerance": cfg["tolerance"], "opset": cfg["opset"]})
    print(f"export_onnx: ONNX vs torch on {parity.frames} frames: max |logit diff| {parity.max_abs_diff:.2e} "
          f"(tolerance {cfg['tolerance']:g}), argmax agreement {parity.argmax_agreement:.3f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

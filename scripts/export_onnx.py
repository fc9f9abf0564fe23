"""Stage export_onnx: the classifier as ONNX (NCHW, batch 1), checked against onnxruntime.

In:  --classifier weights, --frames shards, --test-labels (the parity frames are the first
     export.parity_frames test frames), params.yaml (model.*, export.*)
Out: --onnx model, --metrics JSON (max |logit difference| torch vs onnxruntime, argmax agreement)
Fails when the difference exceeds export.tolerance.
"""
from __future__ import annotations

import sys

from maskinspect import cli, models
from maskinspect.atomic import atomic_path, write_json
from maskinspect.errors import PipelineError
from maskinspect.export import export_onnx, onnx_parity
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled, shown


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
    write_json(args.metrics, {"frames": parity.frames, "max_abs_logit_diff": float(f"{parity.max_abs_diff:.3g}"),
                              "argmax_agreement": round(parity.argmax_agreement, 4), "tolerance": cfg["tolerance"],
                              "opset": cfg["opset"]})
    print(f"export_onnx: ONNX vs torch on {parity.frames} frames: max |logit diff| {parity.max_abs_diff:.2e} "
          f"(tolerance {cfg['tolerance']:g}), argmax agreement {parity.argmax_agreement:.3f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

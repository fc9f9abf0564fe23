"""Stage export: the classifier as ONNX (NCHW, batch 1), checked against onnxruntime.

In:  --classifier weights, frame shards (--frames), --test labels (the parity frames are
     the first export.parity_frames test frames), params.yaml (model.*, export.*)
Out: --out ONNX model, --metrics JSON (max |logit difference| torch vs onnxruntime, argmax agreement)
Fails when the difference exceeds export.tolerance.
"""
from __future__ import annotations

import sys
from pathlib import Path

from maskinspect import cli, models, params as params_mod
from maskinspect.atomic import atomic_path, write_json
from maskinspect.errors import PipelineError
from maskinspect.export import export_onnx, onnx_parity
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled


@cli.stage("export")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--classifier", required=True, type=Path)
    p.add_argument("--frames", nargs="+", required=True, type=Path)
    p.add_argument("--test", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = params_mod.load(args.params)
    cfg, model_cfg = params["export"], params["model"]
    cli.pin_threads(params["runtime"]["threads"])

    model = models.build_classifier(model_cfg)
    models.load_into(model, models.load_weights(args.classifier), str(args.classifier))
    ids = read_labelled(args.test)[0][: cfg["parity_frames"]]
    if not ids:
        raise PipelineError(f"{args.test}: no test frames to check the ONNX model on")
    images = load_shards(args.frames).take(ids, "test frame")
    with atomic_path(args.out, suffix=".onnx") as tmp:  # renamed into place only when it passes
        export_onnx(model, model_cfg["input_size"], tmp, cfg["opset"])
        parity = onnx_parity(model, tmp, images, model_cfg["input_size"])
        if parity.max_abs_diff > cfg["tolerance"]:
            raise PipelineError(f"{args.out}: ONNX logits differ from torch by {parity.max_abs_diff:.3g} > "
                                f"export.tolerance {cfg['tolerance']:g}")
    write_json(args.metrics, {"frames": parity.frames, "max_abs_logit_diff": float(f"{parity.max_abs_diff:.3g}"),
                              "argmax_agreement": round(parity.argmax_agreement, 4), "tolerance": cfg["tolerance"],
                              "opset": cfg["opset"]})
    print(f"export: ONNX vs torch on {parity.frames} frames: max |logit diff| {parity.max_abs_diff:.2e} "
          f"(tolerance {cfg['tolerance']:g}), argmax agreement {parity.argmax_agreement:.3f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

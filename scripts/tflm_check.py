"""Stage tflm_check: the int8 model in TensorFlow Lite Micro, as the camera runs it.

In:  --model int8 .tflite, frame shards (--frames), --test labels, params.yaml (model.*, tflm.*)
Out: --metrics JSON: agreement with LiteRT on the test sample (share of identical argmax,
     max difference in LSB), smallest working arena (bytes), model size, MACs and MOps
     counted from the graph (mops: 2 x MACs, the published convention; all_mops: with the
     elementwise ops), and the latency estimated for the H7 at tflm.cpu_mhz from the
     MOps at tflm.mops_per_mhz (the assumption is written beside the figure).
Fails when the model, the arena or the work exceed tflm.max_model_bytes / max_arena_bytes / max_mops.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from maskinspect import cli, params as params_mod, tflite_graph, tflm
from maskinspect.atomic import write_json
from maskinspect.errors import PipelineError
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled
from maskinspect.quantize import firmware_input, run_litert


@cli.stage("tflm_check")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--frames", nargs="+", required=True, type=Path)
    p.add_argument("--test", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = params_mod.load(args.params)
    cfg = params["tflm"]
    size = params["model"]["input_size"]

    model = tflm.read_model(args.model)
    graph = tflite_graph.read(args.model)
    arena = tflm.smallest_arena(model)
    ids = read_labelled(args.test)[0]
    if not ids:
        raise PipelineError(f"{args.test}: no test frames to run")
    inputs = firmware_input(load_shards(args.frames).take(ids, "test frame"), size)
    micro = tflm.run(model, inputs, arena)
    lite = run_litert(args.model, inputs).raw
    lsb = int(np.abs(micro.astype(np.int16) - lite.astype(np.int16)).max())
    agreement = float((micro.argmax(1) == lite.argmax(1)).mean())
    work = tflite_graph.work(graph)
    rate = cfg["mops_per_mhz"] * cfg["cpu_mhz"]   # MOp/s
    latency_ms = work["all_mops"] / rate * 1000
    metrics = {
        "model_bytes": len(model),
        "arena_bytes": arena,
        "model_plus_arena_bytes": len(model) + arena,
        "macs": work["macs"],
        "mops": work["mops"],
        "all_mops": work["all_mops"],
        "latency_ms_estimate": round(latency_ms, 1),
        "latency_assumption": (f"{work['all_mops']} MOp (convolutions, head and elementwise ops) at "
                               f"{cfg['mops_per_mhz']} MOp/s per MHz x {cfg['cpu_mhz']} MHz "
                               f"(published CMSIS-NN int8 rate on Cortex-M7 is about 1.0-1.2 MOp/s per MHz; "
                               f"the published ResNet-9 ran at about 0.46 on the old firmware)"),
        "litert_agreement": {"frames": len(ids), "argmax_identical": round(agreement, 4), "max_diff_lsb": lsb},
        "budget": {"max_model_bytes": cfg["max_model_bytes"], "max_arena_bytes": cfg["max_arena_bytes"],
                   "max_mops": cfg["max_mops"]},
    }
    print(f"tflm_check: model {len(model)} B, arena {arena} B, {work['mops']} MOps, ~{latency_ms:.0f} ms at "
          f"{cfg['cpu_mhz']} MHz; TFLM vs LiteRT: argmax identical {agreement:.3f}, max {lsb} LSB", file=sys.stderr)
    if len(model) > cfg["max_model_bytes"]:
        raise PipelineError(f"{args.model}: {len(model)} bytes, over tflm.max_model_bytes {cfg['max_model_bytes']}")
    if work["mops"] > cfg["max_mops"]:
        raise PipelineError(f"{args.model}: {work['mops']} MOps per frame, over tflm.max_mops {cfg['max_mops']}")
    if arena > cfg["max_arena_bytes"]:
        raise PipelineError(f"{args.model}: needs a {arena} byte arena, over tflm.max_arena_bytes {cfg['max_arena_bytes']}")
    write_json(args.metrics, metrics)  # only for a model within budget: a failed gate leaves no metrics


if __name__ == "__main__":
    sys.exit(main())

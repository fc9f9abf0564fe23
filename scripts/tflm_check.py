"""Stage tflm_check: the int8 model in TensorFlow Lite Micro on the host, as the camera runs it.

In:  --model int8 .tflite, --camera (the labelled frames at the sensor's size), --test-labels,
     params.yaml (model.*, tflm.*)
Out: --metrics JSON: agreement with LiteRT on the test sample as the camera feeds it (share of identical argmax,
     max difference in LSB), smallest working arena (bytes), model size, MACs and MOps
     counted from the graph (mops: 2 x MACs, the published convention; all_mops: with the
     elementwise ops). What it costs on the camera itself is measured by firmware_check.
Fails when the model, the arena or the work exceed tflm.max_model_bytes / max_arena_bytes / max_mops.
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.device import runtime
from maskinspect.model import tflite_graph
from maskinspect.atomic import write_json
from maskinspect.device.camera import camera_input
from maskinspect.errors import PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled, shown


@cli.stage("tflm_check")
def main(args, params):
    import numpy as np

    cfg = params["tflm"]
    size = params["model"]["input_size"]
    model = runtime.read_model(args.model)
    graph = tflite_graph.read(args.model)
    arena = runtime.smallest_arena(model)
    ids = read_labelled(args.test_labels)[0]
    if not ids:
        raise PipelineError(f"{shown(args.test_labels)}: no test frames to run")
    inputs = camera_input(load_shards(args.camera).take(ids, "test frame"), size)
    micro = runtime.run_tflm(model, inputs, arena)
    lite = runtime.run_litert(args.model, inputs).raw
    lsb = int(np.abs(micro.astype(np.int16) - lite.astype(np.int16)).max())
    agreement = float((micro.argmax(1) == lite.argmax(1)).mean())
    work = tflite_graph.work(graph)
    metrics = {
        "model_bytes": len(model),
        "arena_bytes": arena,
        "model_plus_arena_bytes": len(model) + arena,
        "macs": work["macs"],
        "mops": work["mops"],
        "all_mops": work["all_mops"],
        "litert_agreement": {"frames": len(ids), "argmax_identical": round(agreement, 4), "max_diff_lsb": lsb},
        "budget": {"max_model_bytes": cfg["max_model_bytes"], "max_arena_bytes": cfg["max_arena_bytes"],
                   "max_mops": cfg["max_mops"]},
    }
    print(f"tflm_check: model {len(model)} B, arena {arena} B, {work['mops']} MOps; TFLM vs LiteRT: argmax identical {agreement:.3f}, max {lsb} LSB", file=sys.stderr)
    if len(model) > cfg["max_model_bytes"]:
        raise PipelineError(f"{args.model}: {len(model)} bytes, over tflm.max_model_bytes {cfg['max_model_bytes']}")
    if work["mops"] > cfg["max_mops"]:
        raise PipelineError(f"{args.model}: {work['mops']} MOps per frame, over tflm.max_mops {cfg['max_mops']}")
    if arena > cfg["max_arena_bytes"]:
        raise PipelineError(f"{args.model}: needs a {arena} byte arena, over tflm.max_arena_bytes {cfg['max_arena_bytes']}")
    write_json(args.metrics, metrics)  # only for a model within budget: a failed gate leaves no metrics


if __name__ == "__main__":
    sys.exit(main())

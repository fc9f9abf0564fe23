"""Stage compare_published: the published uint8 model and ours side by side, on the same
test frames, as each would run on the camera.

Each test frame (at the stored size: labelled images are scaled with Pillow's bicubic, which
reproduces the published figures exactly) is fed as the firmware feeds it: raw uint8 pixels to
the published model, pixel - 128 to our int8 model. Through the camera's input path each model
gets the sensor window scaled to its own input size, so a network of another size (say
`model.input_size: 80` with a stride-2 stem) is compared there with the 64 px published one; its
stored frames are not the published model's size, so that model's stored-frame figure is left
out (null, with the reason) rather than computed on frames scaled twice. Ours runs in TFLite
Micro (the camera's interpreter); the published model in LiteRT, because current TFLite Micro
refuses it (a uint8 model with float parts, "hybrid"), which is recorded.

In:  --frames shards, --camera (the labelled frames at the sensor's size), --test-labels, --ours
     int8 .tflite, --published .tflite, --tflm-metrics JSON
Out: --metrics JSON (accuracy, balanced accuracy, per-class recall on the stored frames and
     through the camera's input path, model bytes, MOps, arena per model), --table markdown
"""
from __future__ import annotations

import json
import sys

from maskinspect.workflow import runner as cli
from maskinspect.device import runtime
from maskinspect.model import tflite_graph
from maskinspect.atomic import write_json, write_text
from maskinspect.device.camera import camera_pixels
from maskinspect.model.evaluation import labels_of, report
from maskinspect.errors import PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled, shown
from maskinspect.workflow import pinned


FIGURES = ("accuracy", "balanced_accuracy", "recall", "confusion")


def scores(path, graph, pixels, arena: int | None):
    """Dequantised outputs of a model on uint8 pixels fed as the firmware feeds them: pixel - 128
    to an int8 model (in TFLite Micro), raw pixels to the 2020 uint8 model (in LiteRT)."""
    import numpy as np

    if graph.input().dtype == "INT8":
        return runtime.tflm_scores(path, (pixels ^ 0x80).view(np.int8), arena)
    return runtime.run_litert(path, pixels).scores


@cli.stage("compare_published")
def main(args, params):
    ids, labels = read_labelled(args.test_labels)
    frames = load_shards(args.frames).take(ids, "test frame")
    sensor = load_shards(args.camera).take(ids, "test frame")
    result = {"test_labels": shown(args.test_labels), "count": len(ids), "models": {}}
    arena = json.loads(args.tflm_metrics.read_text())["arena_bytes"]
    for name, path in (("published", pinned.local(args.published)), ("ours", args.ours)):
        graph = tflite_graph.read(path)
        size = graph.input().shape[1]
        stored_fits = frames.shape[1] == size
        if not stored_fits and name == "ours":
            raise PipelineError(f"{path}: takes {size} px frames; the test frames are {frames.shape[1]} px "
                                f"(frames.size and model.input_size differ)")
        int8 = graph.input().dtype == "INT8"
        if int8:
            arena_note = arena
        else:
            try:
                arena_note = runtime.smallest_arena(runtime.read_model(path))
            except Exception as exc:  # noqa: BLE001 - TFLM's refusal is the finding
                arena_note = f"TFLite Micro refuses it ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
        if stored_fits:
            stored = report(labels, labels_of(scores(path, graph, frames, arena)))
            figures = {k: stored[k] for k in FIGURES}
        else:
            figures = {**dict.fromkeys(FIGURES), "stored_note": f"not scored on the stored frames: they are "
                       f"{frames.shape[1]} px, this model takes {size} px (its camera path is scored at {size} px)"}
        camera = report(labels, labels_of(scores(path, graph, camera_pixels(sensor, size), arena)))
        result["models"][name] = {
            "file": str(path), "input": f"{graph.input().dtype.lower()} {list(graph.input().shape)}",
            "runtime": "TFLite Micro" if int8 else "LiteRT", "model_bytes": graph.size,
            "mops": tflite_graph.work(graph)["mops"], "arena_bytes": arena_note,
            **figures,
            "camera": {k: camera[k] for k in FIGURES},
        }
    write_json(args.metrics, result)
    write_text(args.table, table(result, len(ids), shown(args.test_labels)))
    for name, m in result["models"].items():
        print(f"compare_published: {name}: balanced accuracy {m['balanced_accuracy']} (through the camera's input "
              f"path {m['camera']['balanced_accuracy']}), recall {m['recall']}"
              + (f"; {m['stored_note']}" if "stored_note" in m else ""), file=sys.stderr)


def table(result: dict, count: int, test: str) -> str:
    rows = ["| model | input | runtime | frames | accuracy | balanced accuracy | recall bad | recall good "
            "| recall no_mask | model bytes | MOps | arena bytes |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["models"].items():
        arena = m["arena_bytes"] if isinstance(m["arena_bytes"], int) else "refused by TFLM"
        for frames, f in (("stored", m), ("camera path", m["camera"])):
            if f["recall"] is None:  # a model of another input size than the stored frames
                rows.append(f"| {name} | {m['input']} | {m['runtime']} | {frames} | — | — | — | — | — "
                            f"| {m['model_bytes']} | {m['mops']} | {arena} |")
                continue
            rows.append(f"| {name} | {m['input']} | {m['runtime']} | {frames} | {f['accuracy']:.3f} | "
                        f"{f['balanced_accuracy']:.3f} | {f['recall']['bad']:.3f} | {f['recall']['good']:.3f} | "
                        f"{f['recall']['no_mask']:.3f} | {m['model_bytes']} | {m['mops']} | {arena} |")
    notes = "".join(f"\n{name}: {m['stored_note']}\n" for name, m in result["models"].items() if "stored_note" in m)
    return f"Test frames {test} ({count} frames)\n\n" + "\n".join(rows) + "\n" + notes


if __name__ == "__main__":
    sys.exit(main())

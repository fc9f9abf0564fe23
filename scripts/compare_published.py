"""Stage compare_published: the published uint8 model and ours side by side, on the same
test folder, as each would run on the camera.

Each test image is scaled to the model's input (antialiased, as the sensor delivers a
frame at the model's size; Pillow's bicubic reproduces the published figures exactly) and
fed as the firmware feeds it: raw uint8 pixels to the
published model, pixel - 128 to our int8 model. Ours runs in TFLite Micro (the camera's
interpreter); the published model in LiteRT, because current TFLite Micro refuses it
(a uint8 model with float parts, "hybrid"), which is recorded.

In:  --test-dir (<dir>/<class>/*.jpg), --ours int8 .tflite, --published .tflite, --tflm-metrics JSON
Out: --metrics JSON (accuracy, balanced accuracy, per-class recall, model bytes, MOps, arena per
     model), --table markdown
"""
from __future__ import annotations

import json
import sys

from maskinspect import CLASSES, cli, runtime, tflite_graph
from maskinspect.atomic import write_json, write_text
from maskinspect.evaluation import labels_of, report
from maskinspect.images import load_image, read_labelled_folder


@cli.stage("compare_published")
def main(args, params):
    import numpy as np

    items = read_labelled_folder(args.test_dir, CLASSES)
    labels = [label for _, label in items]
    result = {"test_dir": str(args.test_dir), "count": len(items), "models": {}}

    for name, path in (("published", args.published), ("ours", args.ours)):
        graph = tflite_graph.read(path)
        size = graph.input().shape[1]
        images = np.stack([load_image(image, size, "center") for image, _ in items])
        model = runtime.read_model(path)
        if graph.input().dtype == "INT8":
            inputs = (images.astype(np.int16) - 128).astype(np.int8)
            arena = json.loads(args.tflm_metrics.read_text())["arena_bytes"]
            raw = runtime.run_tflm(model, inputs, arena).astype(np.float32)
            out = graph.output()
            scores, interpreter, arena_note = (raw - out.zero_point[0]) * out.scale[0], "TFLite Micro", arena
        else:
            scores, interpreter = runtime.run_litert(path, images).scores, "LiteRT"
            try:
                arena_note = runtime.smallest_arena(model)
            except Exception as exc:  # noqa: BLE001 - TFLM's refusal is the finding
                arena_note = f"TFLite Micro refuses it ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
        r = report(labels, labels_of(scores))
        result["models"][name] = {
            "file": str(path), "input": f"{graph.input().dtype.lower()} {list(graph.input().shape)}",
            "runtime": interpreter, "model_bytes": graph.size, "mops": tflite_graph.work(graph)["mops"],
            "arena_bytes": arena_note, **{k: r[k] for k in ("accuracy", "balanced_accuracy", "recall", "confusion")},
        }
    write_json(args.metrics, result)
    rows = ["| model | input | runtime | accuracy | balanced accuracy | recall bad | recall good | recall no_mask "
            "| model bytes | MOps | arena bytes |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["models"].items():
        arena = m["arena_bytes"] if isinstance(m["arena_bytes"], int) else "refused by TFLM"
        rows.append(f"| {name} | {m['input']} | {m['runtime']} | {m['accuracy']:.3f} | {m['balanced_accuracy']:.3f} | "
                    f"{m['recall']['bad']:.3f} | {m['recall']['good']:.3f} | {m['recall']['no_mask']:.3f} | "
                    f"{m['model_bytes']} | {m['mops']} | {arena} |")
    write_text(args.table, f"Test folder {args.test_dir} ({len(items)} images)\n\n" + "\n".join(rows) + "\n")
    for name, m in result["models"].items():
        print(f"compare_published: {name}: balanced accuracy {m['balanced_accuracy']}, recall {m['recall']}",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

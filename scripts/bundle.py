"""Stage bundle: what goes on the camera, with a manifest saying what it is and where it came from.

In:  --model int8 .tflite, --main openmv/main.py, --quantize-metrics, --tflm-metrics and
     --firmware-metrics JSON (the firmware verified on the emulated camera), params.yaml (bundle.*)
Out: --bundle-model (model.tflite), --bundle-labels (model.txt: labels in output order),
     --bundle-main (main.py), --manifest (sha256 of each file, input shape, dtype, scale, zero
     point, labels, metrics, minimum firmware, source git revision); --zip of that folder;
     --summary: the build's headline figures, flat (what `dvc metrics show` shows).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.model import tflite_graph
from maskinspect.atomic import write_bytes, write_json
from maskinspect.device.bundle import labels_text, sha256, source_revision, zip_bytes
from maskinspect.errors import PipelineError
from maskinspect.device.gates import check_gates

ROOT = Path(__file__).resolve().parent.parent


def summary(quantize: dict, tflm: dict, firmware: dict) -> dict:
    """The headline figures of a build, one number each: what `dvc metrics show` and
    `dvc exp show` put side by side (the detailed figures stay in the other metrics files)."""
    latency = firmware["latency"]
    return {
        # balanced accuracy on the test sample: the float model, the int8 model on the stored
        # frames (the host figure), the int8 model fed the way the camera feeds it
        "bal_acc_float": quantize["float"]["balanced_accuracy"],
        "bal_acc_int8": quantize["int8"]["balanced_accuracy"],
        "bal_acc_camera": quantize["camera"]["balanced_accuracy"],
        "bad_recall": quantize["int8"]["recall"]["bad"],
        "bad_recall_camera": quantize["camera"]["recall"]["bad"],
        "model_bytes": tflm["model_bytes"],
        "arena_bytes": firmware["arena_bytes"],                    # the firmware's own TFLite Micro
        "mops": tflm["mops"],
        # milliseconds at the H7's clock: calibrated on the 2020 model's time on the board when it
        # was counted, else the middle of the cycles-per-instruction band (the instruction count
        # behind it, per op too, is in metrics/firmware.json: one column fewer keeps 160 wide)
        "latency_ms": latency.get("ms_calibrated", round(sum(latency["ms_band"]) / 2, 1)),
    }


def _latency(latency: dict) -> dict:
    """Milliseconds an inference takes at the H7's clock: a band over cycles per instruction, and
    the figure calibrated on the 2020 model's time on the board (when it was counted)."""
    out = {"band": latency["ms_band"], "cpi_band": latency["cpi_band"], "cpu_mhz": latency["cpu_mhz"]}
    if "ms_calibrated" in latency:
        out["calibrated"] = latency["ms_calibrated"]
        out["calibration"] = (f"the 2020 model's {latency['calibration']['measured_ms']} ms on the board over its "
                              f"{latency['calibration']['instructions']} instructions on the same library: "
                              f"{latency['calibration']['cpi']} cycles per instruction")
    return out


@cli.stage("bundle")
def main(args, params):
    cfg = params["bundle"]
    graph = tflite_graph.read(args.model)
    check_gates(graph)  # never bundle a model the camera would refuse
    if graph.output().shape[-1] != len(CLASSES):
        raise PipelineError(f"{args.model}: {graph.output().shape[-1]} outputs for {len(CLASSES)} labels")
    try:
        quantize_metrics = json.loads(args.quantize_metrics.read_text())
        tflm_metrics = json.loads(args.tflm_metrics.read_text())
        firmware_metrics = json.loads(args.firmware_metrics.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot read the metrics to bundle: {exc}") from None

    folder = args.bundle_model.parent
    targets = {args.bundle_model: args.model.read_bytes(), args.bundle_labels: labels_text(CLASSES).encode(),
               args.bundle_main: args.main.read_bytes()}
    if any(path.parent != folder for path in [*targets, args.manifest]):
        raise PipelineError(f"the bundle's files must share one folder ({folder})")
    files = {path.name: data for path, data in targets.items()}
    inp, out = graph.input(), graph.output()
    manifest = {
        "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()},
        "labels": list(CLASSES),
        "input": {"shape": list(inp.shape), "dtype": inp.dtype.lower(), "scale": inp.scale[0],
                  "zero_point": inp.zero_point[0], "layout": "NHWC RGB"},
        "output": {"shape": list(out.shape), "dtype": out.dtype.lower(), "scale": out.scale[0],
                   "zero_point": out.zero_point[0], "meaning": "logits, in the order of labels"},
        "metrics": {
            "int8_test": quantize_metrics["int8"],
            "float_test": quantize_metrics["float"],
            "camera_test": quantize_metrics["camera"],
            "int8_drop": quantize_metrics["drop"],
            "camera_gap": quantize_metrics["camera_gap"],
            "test_count": quantize_metrics["test_count"],
            "arena_bytes": firmware_metrics["arena_bytes"],
            "mops": tflm_metrics["mops"],
            "instructions": firmware_metrics["instructions"],
            "latency_ms": _latency(firmware_metrics["latency"]),
        },
        "firmware": {"minimum": firmware_metrics["minimum_firmware"], "verified": firmware_metrics["firmware_verified"],
                     "board": cfg["board"], "module": "ml"},
        "source": source_revision(ROOT),
    }
    targets[args.manifest] = files[args.manifest.name] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    for path, data in targets.items():
        write_bytes(path, data)
    write_bytes(args.zip, zip_bytes(files, folder.name))
    write_json(args.summary, summary(quantize_metrics, tflm_metrics, firmware_metrics))
    print(f"bundle: {folder}/ ({', '.join(sorted(files))}) and {args.zip}; source "
          f"{manifest['source']['revision'][:12]}{' (dirty)' if manifest['source']['dirty'] else ''}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

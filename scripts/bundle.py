"""Stage bundle: what goes on the camera, with a manifest saying what it is and where it came from.

In:  --model int8 .tflite, --main openmv/main.py, --quantize-metrics and --tflm-metrics JSON
     params.yaml (bundle.*)
Out: --out-dir with model.tflite, model.txt (labels in output order), main.py,
     manifest.json (sha256 of each file, input shape, dtype, scale, zero point, labels,
     metrics, minimum firmware, source git revision); --zip of that folder.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from maskinspect import CLASSES, cli, params as params_mod, tflite_graph
from maskinspect.atomic import write_bytes
from maskinspect.bundle import labels_text, sha256, source_revision, zip_bytes
from maskinspect.errors import PipelineError
from maskinspect.quantize import check_gates

ROOT = Path(__file__).resolve().parent.parent


@cli.stage("bundle")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--main", required=True, type=Path)
    p.add_argument("--quantize-metrics", required=True, type=Path)
    p.add_argument("--tflm-metrics", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--zip", required=True, type=Path)
    args = p.parse_args(argv)
    cfg = params_mod.load(args.params)["bundle"]

    graph = tflite_graph.read(args.model)
    check_gates(graph)  # never bundle a model the camera would refuse
    if graph.output().shape[-1] != len(CLASSES):
        raise PipelineError(f"{args.model}: {graph.output().shape[-1]} outputs for {len(CLASSES)} labels")
    try:
        quantize_metrics = json.loads(args.quantize_metrics.read_text())
        tflm_metrics = json.loads(args.tflm_metrics.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot read the metrics to bundle: {exc}") from None

    files = {
        "model.tflite": args.model.read_bytes(),
        "model.txt": labels_text(CLASSES).encode(),
        "main.py": args.main.read_bytes(),
    }
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
            "int8_drop": quantize_metrics["drop"],
            "test_count": quantize_metrics["test_count"],
            "arena_bytes": tflm_metrics["arena_bytes"],
            "mops": tflm_metrics["mops"],
            "latency_ms_estimate": tflm_metrics["latency_ms_estimate"],
            "latency_assumption": tflm_metrics["latency_assumption"],
        },
        "firmware": {"minimum": cfg["min_firmware"], "board": cfg["board"], "module": "ml"},
        "source": source_revision(ROOT),
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    for name, data in files.items():
        write_bytes(args.out_dir / name, data)
    write_bytes(args.zip, zip_bytes(files, args.out_dir.name))
    print(f"bundle: {args.out_dir}/ ({', '.join(sorted(files))}) and {args.zip}; source "
          f"{manifest['source']['revision'][:12]}{' (dirty)' if manifest['source']['dirty'] else ''}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

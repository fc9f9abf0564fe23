"""What one inference costs on the camera, per candidate architecture: the int8 model linked with
OpenMV's own TensorFlow Lite Micro (libtflm 73eb1aa, firmware 4.6.20-4.8.1) and run on an
emulated Cortex-M7 (QEMU mps2-an500, -icount), as firmware_check does.

    scripts/venv.sh python benchmarks/inference_cost.py [--libraries ../shared/openmv-libtflm]

For each candidate (model.* overrides of params.yaml) it builds the classifier with fixed random
weights (instruction counts of CMSIS-NN's int8 kernels do not depend on the weights' values),
exports and converts it as the pipeline does (calibrated on random frames pinned to 0..255),
and prints a markdown table: MOps (2 x MACs), model bytes, arena, instructions of one inference
(total, and the share of CONV_2D and ADD), and milliseconds at 480 MHz for 1.0-1.5 cycles per
instruction and calibrated on the 2020 model (150 ms on the board). Accuracy is not measured
here: that is the repeated cross-validation's job (benchmarks/real_data_experiments.py).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import maskinspect  # noqa: E402,F401 - pins threads and numeric kernels before numpy loads

CANDIDATES: dict[str, dict] = {
    "published (64 px)": {},
    "64 px, stride-2 stem": {"stem_stride": 2},
    "80 px, stride-2 stem": {"input_size": 80, "stem_stride": 2},
    "96 px, stride-2 stem": {"input_size": 96, "stem_stride": 2},
    "48 px": {"input_size": 48},
    "56 px": {"input_size": 56},
}
LIBTFLM = "73eb1aa"
CALIBRATION = ROOT.parent / "shared" / "data" / "endpointai" / "reference" / "lightly_resnet9.tflite"


def int8_model(cfg: dict, work: Path) -> bytes:
    import numpy as np
    import torch

    from maskinspect.convert import convert
    from maskinspect.export import export_onnx, fold_batchnorm
    from maskinspect.models import build_classifier

    torch.manual_seed(0)
    model = fold_batchnorm(build_classifier(cfg).eval())
    onnx = work / "model.onnx"
    export_onnx(model, cfg["input_size"], onnx, 13)
    rng = np.random.default_rng(0)
    size = cfg["input_size"]
    calibration = rng.random((32, size, size, 3), dtype=np.float32)
    calibration[0, 0, 0], calibration[0, 0, 1] = 0.0, 1.0  # the range the firmware's input needs
    return convert(onnx, calibration, threads=2)


def measure(name: str, overrides: dict, base: dict, builder, lib, calibration_ticks: int | None) -> dict:
    import numpy as np

    from maskinspect import firmware, tflite_graph

    cfg = {**base, **overrides}
    with tempfile.TemporaryDirectory() as work:
        model = int8_model(cfg, Path(work))
        (Path(work) / "model.tflite").write_bytes(model)
        work_done = tflite_graph.work(tflite_graph.read(Path(work) / "model.tflite"))
    size = cfg["input_size"]
    inputs = np.random.default_rng(1).integers(-128, 128, (1, size, size, 3), dtype=np.int8)
    run = firmware.check(builder, lib, model, inputs)
    if not run.ok:
        raise SystemExit(f"inference_cost: {name}: libtflm {LIBTFLM} refuses it: {run.reason()}")
    ops: dict[str, int] = defaultdict(int)
    for op, ticks in run.ops:
        ops[op] += ticks
    total = sum(ops.values()) or 1
    instructions = run.instructions()
    return {"name": name, "mops": work_done["mops"],
            "bytes": len(model), "arena": run.arena, "minstr": instructions / 1e6,
            "conv": ops.get("CONV_2D", 0) / total, "add": ops.get("ADD", 0) / total,
            "band": (instructions * 1.0 / 480e3, instructions * 1.5 / 480e3),
            "calibrated": 150 * run.ticks[0] / calibration_ticks if calibration_ticks else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--libraries", type=Path, default=ROOT.parent / "shared" / "openmv-libtflm")
    p.add_argument("--only", nargs="*", help="candidate names (default: all)")
    args = p.parse_args()

    import numpy as np

    from maskinspect import firmware, params, runtime
    from maskinspect.gates import openmv_ops

    base = params.load(ROOT / "params.yaml")["model"]
    lib = firmware.library(args.libraries, LIBTFLM)
    with tempfile.TemporaryDirectory(prefix="harness-") as work:
        builder = firmware.Builder(Path(work), sorted(openmv_ops()))
        calibration_ticks = None
        if CALIBRATION.exists():
            timing = firmware.check(builder, lib, firmware.int8_for_timing(runtime.read_model(CALIBRATION)),
                                    np.zeros((1, 64, 64, 3), np.int8), per_op=False)
            calibration_ticks = timing.ticks[0] if timing.ok else None
        rows = [measure(n, o, base, builder, lib, calibration_ticks) for n, o in CANDIDATES.items()
                if not args.only or n in args.only]
    print(f"| candidate | MOps | model bytes | arena bytes | M instructions | CONV_2D | ADD | ms at 480 MHz (CPI 1.0-1.5) | ms calibrated |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        mops = f"{r['mops']:.2f}" if r["mops"] is not None else "—"
        cal = f"{r['calibrated']:.0f}" if r["calibrated"] else "—"
        print(f"| {r['name']} | {mops} | {r['bytes']:,} | {r['arena']:,} | {r['minstr']:.2f} | {r['conv']:.0%} | "
              f"{r['add']:.0%} | {r['band'][0]:.0f}-{r['band'][1]:.0f} | {cal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

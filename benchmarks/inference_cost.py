"""What one inference costs on the camera, per candidate architecture: the int8 model linked with
OpenMV's own TensorFlow Lite Micro (libtflm 73eb1aa, firmware 4.6.20-4.8.1) and run on an
emulated Cortex-M7 (QEMU mps2-an500, -icount), as firmware_check does.

    scripts/venv.sh python benchmarks/inference_cost.py [--only NAME ...]   # OpenMV's libtflm: pins/openmv-libtflm-73eb1aa.yaml
    scripts/venv.sh python benchmarks/inference_cost.py --per-node [--model dist/openmv/model.tflite]

For each candidate (model.* overrides of params.yaml) it builds the classifier with fixed random
weights (instruction counts of CMSIS-NN's int8 kernels do not depend on the weights' values),
exports and converts it as the pipeline does (calibrated on random frames pinned to 0..255),
and prints a markdown table: MOps (2 x MACs), model bytes, arena, instructions of one inference
(total, and the share of CONV_2D and ADD), and milliseconds at 480 MHz for 1.0-1.5 cycles per
instruction and calibrated on the 2020 model (150 ms on the board). Accuracy is not measured
here: that is the repeated cross-validation's job (benchmarks/real_data_experiments.py).

--per-node: where one inference's instructions go, node by node (op, input and output shapes,
millions of instructions, share), for the candidates or for a given .tflite (e.g. the bundle's):
the map to read before proposing a cheaper network.
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
    "64 px, block 1 at stride 2": {"block1_stride": 2},
}
LIBTFLM = "73eb1aa"


def int8_model(cfg: dict, work: Path) -> bytes:
    import numpy as np
    import torch

    from maskinspect.model.convert import convert
    from maskinspect.model.export import export_onnx, fold_batchnorm
    from maskinspect.model.models import build_classifier

    torch.manual_seed(0)
    model = fold_batchnorm(build_classifier(cfg).eval())
    onnx = work / "model.onnx"
    export_onnx(model, cfg["input_size"], onnx, 13)
    rng = np.random.default_rng(0)
    size = cfg["input_size"]
    calibration = rng.random((32, size, size, 3), dtype=np.float32)
    calibration[0, 0, 0], calibration[0, 0, 1] = 0.0, 1.0  # the range the firmware's input needs
    return convert(onnx, calibration, threads=2)


def on_camera(name: str, builder, lib, model: bytes, size: int):
    """One run on the emulated Cortex-M7 with the library, on a fixed random frame of `size` px;
    its refusal ends the benchmark, with its reason."""
    import numpy as np

    from maskinspect.device import firmware

    inputs = np.random.default_rng(1).integers(-128, 128, (1, size, size, 3), dtype=np.int8)
    run = firmware.check(builder, lib, model, inputs)
    if not run.ok:
        raise SystemExit(f"inference_cost: {name}: libtflm {LIBTFLM} refuses it: {run.reason()}")
    return run


def print_nodes(name: str, model: bytes, run) -> None:
    """A markdown table of the run's nodes, in execution order, with the graph's shapes."""
    from maskinspect.device.firmware import INSTRUCTIONS_PER_TICK
    from maskinspect.model.tflite_graph import read

    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "m.tflite").write_bytes(model)
        graph = read(Path(work) / "m.tflite")
    if [op.name for op in graph.ops] != [op for op, _ in run.ops]:
        raise SystemExit(f"inference_cost: {name}: the profile's ops do not match the graph's nodes")
    total = sum(t for _, t in run.ops) or 1

    def shape(index: int) -> str:  # without the batch dimension
        return "x".join(map(str, graph.tensors[index].shape[1:]))

    print(f"\n{name}: {run.instructions() / 1e6:.2f} M instructions, node by node (libtflm {LIBTFLM})\n")
    print("| # | op | input | output | M instructions | share |")
    print("|---:|---|---|---|---:|---:|")
    for i, (node, (op, ticks)) in enumerate(zip(graph.ops, run.ops)):
        print(f"| {i} | {op} | {shape(node.inputs[0])} | {shape(node.outputs[0])} | "
              f"{ticks * INSTRUCTIONS_PER_TICK / 1e6:.2f} | {ticks / total:.1%} |")


def measure(name: str, overrides: dict, base: dict, builder, lib, calibration_ticks: int | None,
            per_node: bool = False) -> dict:
    from maskinspect.model import tflite_graph

    cfg = {**base, **overrides}
    with tempfile.TemporaryDirectory() as work:
        model = int8_model(cfg, Path(work))
        (Path(work) / "model.tflite").write_bytes(model)
        work_done = tflite_graph.work(tflite_graph.read(Path(work) / "model.tflite"))
    run = on_camera(name, builder, lib, model, cfg["input_size"])
    if per_node:
        print_nodes(name, model, run)
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
    p.add_argument("--only", nargs="*", help="candidate names (default: all)")
    p.add_argument("--per-node", action="store_true", help="also print each node's instructions")
    p.add_argument("--model", type=Path, help="with --per-node: this int8 .tflite instead of the candidates")
    args = p.parse_args()

    import numpy as np

    from maskinspect.device import firmware, runtime
    from maskinspect.workflow import params
    from maskinspect.model import tflite_graph
    from maskinspect.device.gates import openmv_ops

    from maskinspect.workflow import pinned

    base = params.load(ROOT / "params.yaml")["model"]
    lib = firmware.library(pinned.local(ROOT / pinned.pin_path(f"openmv-libtflm-{LIBTFLM}")), LIBTFLM)
    calibration = pinned.local(ROOT / pinned.pin_path("published-model"))
    with tempfile.TemporaryDirectory(prefix="harness-") as work:
        builder = firmware.Builder(Path(work), sorted(openmv_ops()))
        calibration_ticks = None
        timing = firmware.check(builder, lib, firmware.int8_for_timing(runtime.read_model(calibration)),
                                np.zeros((1, 64, 64, 3), np.int8), per_op=False)
        calibration_ticks = timing.ticks[0] if timing.ok else None
        if args.model:
            model = args.model.read_bytes()
            run = on_camera(str(args.model), builder, lib, model, tflite_graph.read(args.model).input().shape[1])
            print_nodes(str(args.model), model, run)
            return 0
        rows = [measure(n, o, base, builder, lib, calibration_ticks, args.per_node) for n, o in CANDIDATES.items()
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

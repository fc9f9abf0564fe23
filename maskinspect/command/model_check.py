"""`maskinspect check MODEL.tflite`: is this model safe for an OpenMV camera, and what does it cost?

For any .tflite (ours, the published 2020 one, a model from elsewhere): the camera's gates (ops
in OpenMV's resolver, int8 data path, the input scale and zero point the firmware feeds), model
bytes and MOps from the graph, the arena the host TensorFlow Lite Micro needs, and, where the
ARM toolchain and QEMU are installed, the model on every firmware params.yaml claims (OpenMV's
own libtflm on an emulated Cortex-M7): prepared or refused in the library's own words, arena,
instructions of one inference and the latency band. One line per refusal; exit 1 on any.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from maskinspect.device import firmware, runtime
from maskinspect.model import tflite_graph
from maskinspect.errors import PipelineError
from maskinspect.device.gates import gate_problems, openmv_ops
from maskinspect.workflow.layout import library_pins


def host_figures(path: Path) -> tuple[dict, list[str]]:
    graph = tflite_graph.read(path)
    work = tflite_graph.work(graph)
    figures = {"model bytes": path.stat().st_size, "MOps (2 x MACs)": work["mops"],
               "input": f"{graph.input().dtype} {list(graph.input().shape)}",
               "output": f"{graph.output().dtype} {list(graph.output().shape)}"}
    refusals = [f"gate: {p}" for p in gate_problems(graph)]
    try:
        figures["arena bytes (host TFLite Micro)"] = runtime.smallest_arena(runtime.read_model(path))
    except (PipelineError, RuntimeError, ValueError) as exc:
        refusals.append(f"host TFLite Micro: {str(exc).splitlines()[0]}")
    return figures, refusals


def firmware_figures(path: Path, params: dict, root: Path) -> tuple[dict, list[str]]:
    cfg = params["firmware"]
    graph = tflite_graph.read(path)
    shape = [d if d > 0 else 1 for d in graph.input().shape]
    dtype = np.int8 if graph.input().dtype == "INT8" else np.uint8
    inputs = np.zeros(shape, dtype=dtype).view(np.int8)
    model = runtime.read_model(path)
    by_commit = firmware.claims_by_library(cfg["claims"])
    libs = firmware.pinned_libraries([root / p for p in library_pins(cfg["claims"], root)], by_commit)
    figures, refusals = {}, []
    with tempfile.TemporaryDirectory(prefix="harness-") as work:
        builder = firmware.Builder(Path(work), sorted(openmv_ops()))
        for commit, versions in by_commit.items():
            served = ", ".join(versions)
            run = firmware.check(builder, libs[commit], model, inputs, per_op=False)
            if not run.ok:
                refusals.append(f"firmware {served} (libtflm {commit}): {run.reason()}")
                continue
            instructions = run.instructions()
            low, high = (instructions * cpi / cfg["cpu_mhz"] / 1e3 for cpi in cfg["cpi"])
            figures[f"firmware {served}"] = (f"runs; arena {run.arena:,} B; {instructions / 1e6:.2f} M instructions "
                                             f"= {low:.0f}-{high:.0f} ms at {cfg['cpu_mhz']} MHz "
                                             f"(CPI {cfg['cpi'][0]}-{cfg['cpi'][1]})")
    return figures, refusals


def check(path: Path, params: dict, root: Path, on_firmware: bool = True) -> tuple[dict, list[str]]:
    if not path.is_file():
        raise PipelineError(f"{path}: no such file")
    figures, refusals = host_figures(path)
    if on_firmware:
        try:
            firmware.toolchain()
        except PipelineError as exc:
            figures["firmware"] = f"not checked: {exc}"
        else:
            more, why = firmware_figures(path, params, root)
            figures.update(more)
            refusals += why
    return figures, refusals

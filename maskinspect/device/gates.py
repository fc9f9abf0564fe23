"""The checks an int8 model must pass before it may go near the camera, read from the file.

The OpenMV firmware feeds an int8 model `pixel - 128` and ignores the model's input
quantisation, so the model must take RGB in [0, 1] with scale 1/255 and zero point -128 (a
model calibrated on frames that top out at 0.8 gets scale 0.8/255 and sees every frame too
bright). Every op must be in the firmware's TFLite Micro resolver, every tensor on the data
path int8 (no hybrid or float model), the output int8.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from maskinspect.errors import PipelineError
from maskinspect.model.tflite_graph import Graph

OPENMV_OPS_FILE = Path(__file__).with_name("openmv_tflm_ops.txt")
INPUT_SCALE = 1 / 255
INPUT_ZERO_POINT = -128
# Constants that are legitimately not int8 in a full-integer model: biases (int32) and the
# shape-like operands of PAD, RESHAPE, MEAN, ... (int32/int64).
CONSTANT_TYPES = {"INT8", "INT32", "INT64"}


@lru_cache(maxsize=1)
def openmv_ops() -> frozenset[str]:
    lines = OPENMV_OPS_FILE.read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# Why a tensor of another type is there, in words: TensorFlow 1's converter made uint8 models (the
# published 2020 one is), a hybrid model keeps float activations with int8 weights, a float model is float.
KIND_OF = {"UINT8": "a uint8 model, as TensorFlow 1's converter made them; OpenMV's TFLite Micro takes int8",
           "FLOAT32": "float arithmetic: a float or hybrid model", "FLOAT16": "float arithmetic: a float16 model"}


def _kind(dtype: str) -> str:
    return KIND_OF.get(dtype, "not a full-integer int8 model")


def gate_problems(graph: Graph) -> list[str]:
    """Why the camera would refuse or misread this model; empty when it is fit to ship."""
    problems = []
    unsupported = [name for name in graph.op_names if name not in openmv_ops()]
    if unsupported:
        problems.append(f"ops outside OpenMV's TFLite Micro resolver: {', '.join(unsupported)}")
    for t in graph.data_path():
        if t.dtype != "INT8":
            problems.append(f"tensor {t.name!r} on the data path is {t.dtype}, not INT8 ({_kind(t.dtype)})")
            break
    for t in graph.tensors:
        if t.constant and t.dtype not in CONSTANT_TYPES:
            problems.append(f"constant tensor {t.name!r} is {t.dtype}, not INT8 ({_kind(t.dtype)})")
            break
    inp = graph.input()
    if inp.dtype == "INT8":
        if len(inp.scale) != 1 or abs(inp.scale[0] - INPUT_SCALE) > 1e-7:
            problems.append(f"input scale is {inp.scale}, the firmware needs 1/255 = {INPUT_SCALE:.9f}")
        if len(inp.zero_point) != 1 or inp.zero_point[0] != INPUT_ZERO_POINT:
            problems.append(f"input zero point is {inp.zero_point}, the firmware needs {INPUT_ZERO_POINT}")
    if graph.output().dtype != "INT8":
        problems.append(f"output is {graph.output().dtype}, not INT8")
    return problems


def check_gates(graph: Graph) -> None:
    problems = gate_problems(graph)
    if problems:
        raise PipelineError(f"{graph.path}: not fit for the camera: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))

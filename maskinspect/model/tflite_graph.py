"""Reading a .tflite flatbuffer: operators, tensors, quantisation, and the work it does.

Read from the file itself (LiteRT's schema module), not from an interpreter, so what is
checked is what ships, before any delegate rewrites it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from maskinspect.errors import PipelineError


@lru_cache(maxsize=1)
def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


@lru_cache(maxsize=1)
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                    # INT8, INT32, FLOAT32, ...
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    constant: bool                # has data in the file (weights, biases, shapes)


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    path: str
    size: int
    ops: tuple[Op, ...]
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def op_names(self) -> list[str]:
        return sorted({op.name for op in self.ops})

    def input(self) -> Tensor:
        return self.tensors[self.inputs[0]]

    def output(self) -> Tensor:
        return self.tensors[self.outputs[0]]

    def data_path(self) -> list[Tensor]:
        """Tensors that carry activations: graph inputs, outputs and every op's outputs."""
        idx = set(self.inputs) | set(self.outputs) | {i for op in self.ops for i in op.outputs}
        return [self.tensors[i] for i in sorted(idx)]


def read(path: str | Path) -> Graph:
    path = Path(path)
    data = path.read_bytes()
    schema = _schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as exc:  # noqa: BLE001 - a foreign file fails in flatbuffers in many ways
        raise PipelineError(f"{path}: not a TFLite model ({type(exc).__name__})") from None
    if not model.subgraphs:
        raise PipelineError(f"{path}: a TFLite model without a subgraph")
    if len(model.subgraphs) > 1:
        raise PipelineError(f"{path}: {len(model.subgraphs)} subgraphs; expected one")
    sub = model.subgraphs[0]
    op_names = _enum_names("BuiltinOperator")
    type_names = _enum_names("TensorType")
    codes = []
    for oc in model.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = op_names.get(code, f"#{code}")
        codes.append(oc.customCode.decode() if name == "CUSTOM" and oc.customCode else name)
    ops = tuple(Op(codes[o.opcodeIndex], tuple(int(i) for i in o.inputs), tuple(int(i) for i in o.outputs))
                for o in sub.operators)
    tensors = []
    for i, t in enumerate(sub.tensors):
        q = t.quantization
        scale = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
        zp = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        constant = bool(buf is not None and ((buf.data is not None and len(buf.data) > 0) or buf.size))
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        tensors.append(Tensor(i, t.name.decode() if isinstance(t.name, bytes) else str(t.name), shape,
                              type_names.get(t.type, str(t.type)), scale, zp, constant))
    return Graph(str(path), len(data), ops, tuple(tensors), tuple(int(i) for i in sub.inputs),
                 tuple(int(i) for i in sub.outputs))


ELEMENTWISE = {"ADD", "SUB", "MUL", "RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "MAXIMUM", "MINIMUM", "SOFTMAX"}


def work(graph: Graph) -> dict:
    """Multiply-accumulates of conv and fully connected layers, and other arithmetic.

    mops = 2 x MACs / 1e6: the convention of the published "33.4 MOp" (torch's FLOP count of
    the convolutions and the head). all_mops adds one op per output element of elementwise
    ops and pools and one per input element of MEAN: what the latency estimate uses.
    """
    macs = 0
    other = 0
    t = graph.tensors
    for op in graph.ops:
        out = t[op.outputs[0]].shape if op.outputs else ()
        n_out = int(np.prod(out)) if out else 0
        if op.name == "CONV_2D":
            w = t[op.inputs[1]].shape  # [Cout, kh, kw, Cin]
            macs += n_out * w[1] * w[2] * w[3]
        elif op.name == "DEPTHWISE_CONV_2D":
            w = t[op.inputs[1]].shape  # [1, kh, kw, Cout]
            macs += n_out * w[1] * w[2]
        elif op.name == "FULLY_CONNECTED":
            w = t[op.inputs[1]].shape  # [out, in]
            macs += n_out * w[1]
        elif op.name in ("MEAN", "SUM"):
            other += int(np.prod(t[op.inputs[0]].shape))
        elif op.name in ELEMENTWISE or op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            other += n_out
    return {"macs": int(macs), "other_ops": int(other), "mops": round(2 * macs / 1e6, 3),
            "all_mops": round((2 * macs + other) / 1e6, 3)}

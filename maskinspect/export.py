"""ONNX export of the classifier (NCHW, batch 1) and its parity check against onnxruntime."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import write_bytes
from .errors import PipelineError
from .training import to_input

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, input_size: int, path: str | Path, opset: int) -> None:
    """TorchScript-based exporter: deterministic bytes for the same weights, and a plain
    graph (Conv, BatchNormalization folded, Add, Relu, GlobalAveragePool, Gemm) that onnx2tf
    maps to TFLite builtins."""
    model = model.eval()
    dummy = torch.zeros(1, 3, input_size, input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice
        torch.onnx.export(model, (dummy,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    write_bytes(path, buf.getvalue())


@dataclass
class Parity:
    frames: int
    max_abs_diff: float
    argmax_agreement: float


def onnx_parity(model: torch.nn.Module, onnx_path: str | Path, images: np.ndarray, input_size: int) -> Parity:
    """Logits of torch and onnxruntime on the same frames, one frame at a time (batch 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x = to_input(images, input_size)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + 1].numpy()})[0] for i in range(len(x))])
    if got.shape != ref.shape:
        raise PipelineError(f"{onnx_path}: output shape {got.shape}, torch gives {ref.shape}")
    return Parity(frames=len(x), max_abs_diff=float(np.abs(got - ref).max()),
                  argmax_agreement=float((got.argmax(1) == ref.argmax(1)).mean()))

"""ONNX export of the classifier (NCHW, batch 1) and its parity check against onnxruntime."""
from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskinspect.atomic import write_bytes
from maskinspect.errors import PipelineError
from maskinspect.model.training import to_input

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model (eval mode) with each BatchNorm2d that follows a Conv2d folded into
    it, in float64 and rounded to float32 once.

    The exporter's own folding runs in float32 through MKL, whose code path depends on the CPU:
    the folded weights then differ in the last bit from one machine to another, and so do the
    ONNX and int8 model bytes. IEEE float64 arithmetic is the same on every CPU. A Conv2d and
    the BatchNorm2d registered right after it in the same parent are a pair (as in every
    module of this network: Sequential order, and conv1/bn1, conv2/bn2 in Lightly's blocks);
    the export stage's parity check against the unfolded model catches any other layout."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            w = _f64(conv.weight)
            b = _f64(conv.bias) if conv.bias is not None else np.zeros(w.shape[0])
            scale = _f64(bn.weight) / np.sqrt(_f64(bn.running_var) + bn.eps)
            folded_w = w * scale[:, None, None, None]
            folded_b = (b - _f64(bn.running_mean)) * scale + _f64(bn.bias)
            conv.weight = nn.Parameter(torch.from_numpy(folded_w.astype(np.float32)))
            conv.bias = nn.Parameter(torch.from_numpy(folded_b.astype(np.float32)))
            setattr(parent, bn_name, nn.Identity())
    return model


def export_onnx(model: torch.nn.Module, input_size: int, path: str | Path, opset: int) -> None:
    """TorchScript-based exporter: the same bytes for the same weights on any CPU (batch norms
    folded beforehand, see fold_batchnorm), and a plain graph (Conv, Add, Relu,
    GlobalAveragePool, Gemm, and the input's BatchNormalization) that onnx2tf maps to TFLite
    builtins."""
    model = fold_batchnorm(model)
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

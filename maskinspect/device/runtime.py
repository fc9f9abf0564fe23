"""Running an int8 model on the host: its input from the stored frames, and the two interpreters
(LiteRT, the reference; TensorFlow Lite Micro, the camera's own interpreter, which scores the
int8 model). What the camera itself feeds the model is maskinspect/device/camera.py. The quantize,
tflm_check, firmware_check, compare_published and report stages and the emulated camera all
use these.

TFLM registers all of its builtin ops, not only OpenMV's subset; the gates check the op list
against the firmware's. OpenMV's firmware links an older TFLM than PyPI's: what it prepares is
checked on an emulated Cortex-M7 (maskinspect/device/firmware/).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskinspect.capture import redirected
from maskinspect.errors import PipelineError


def host_input(images: np.ndarray, input_size: int) -> np.ndarray:
    """The stored frames as the int8 model's input (pixel - 128, NHWC), scaled to the input size
    as the float model's input is (training.to_input): the host's int8 figure."""
    from maskinspect.model.training import to_input

    frames = np.asarray(images)
    if frames.shape[1] != input_size or frames.shape[2] != input_size:
        x = to_input(frames, input_size).permute(0, 2, 3, 1).numpy()
        frames = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return (frames.astype(np.int16) - 128).astype(np.int8)


# ---- LiteRT ---------------------------------------------------------------------------------

@dataclass
class LiteRTRun:
    raw: np.ndarray      # outputs as the model gives them (int8, uint8 or float)
    scores: np.ndarray   # dequantised floats


def run_litert(path: str | Path, inputs: np.ndarray) -> LiteRTRun:
    """A TFLite model in LiteRT, frame by frame, with its builtin kernels (no XNNPACK delegate:
    it is not what runs on the camera)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    raw = []
    for x in inputs:
        it.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        it.invoke()
        raw.append(it.get_tensor(out["index"])[0].copy())
    raw_arr = np.stack(raw)
    scale, zero = out["quantization"]
    scores = (raw_arr.astype(np.float32) - zero) * scale if scale else raw_arr.astype(np.float32)
    return LiteRTRun(raw=raw_arr, scores=scores)


# ---- TensorFlow Lite Micro --------------------------------------------------------------------

def read_model(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such model")
    return path.read_bytes()


def interpreter(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def fits(model: bytes, arena: int) -> bool:
    """Whether the model allocates and runs in an arena of this many bytes (TFLM's complaints
    about the ones that do not are discarded: a search makes many on purpose)."""
    try:
        with redirected(None, fds=(2,)):
            m = interpreter(model, arena)
            m.invoke()  # allocation happens at construction; invoke proves the scratch buffers fit too
        return True
    except RuntimeError:
        return False


def smallest_arena(model: bytes, granularity: int = 16, upper: int = 8 << 20) -> int:
    """The smallest arena (bytes, a multiple of `granularity`) in which the model allocates and runs."""
    if not fits(model, upper):
        raise PipelineError(f"the model does not run in TFLM even with a {upper} byte arena")
    lo, hi = 0, upper // granularity
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(model, mid * granularity):
            hi = mid
        else:
            lo = mid
    return hi * granularity


def run_tflm(model: bytes, inputs: np.ndarray, arena: int) -> np.ndarray:
    """int8 outputs for int8 NHWC inputs, one frame at a time (batch 1 on the camera)."""
    m = interpreter(model, arena)
    out = []
    for x in inputs:
        m.set_input(x[None], 0)
        m.invoke()
        out.append(np.array(m.get_output(0))[0].copy())
    return np.stack(out)


def tflm_scores(path: str | Path, inputs: np.ndarray, arena: int | None = None) -> np.ndarray:
    """Dequantised outputs of an int8 model in TFLite Micro, the camera's interpreter (in the
    smallest arena it runs in unless given one). Quality figures come from here rather than
    LiteRT: the two differ by a least significant bit or two, which turns a near tie on the odd frame."""
    from maskinspect.model import tflite_graph

    model = read_model(path)
    out = tflite_graph.read(path).output()
    raw = run_tflm(model, inputs, arena or smallest_arena(model)).astype(np.float32)
    return (raw - out.zero_point[0]) * out.scale[0]

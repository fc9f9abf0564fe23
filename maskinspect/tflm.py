"""The int8 model in TensorFlow Lite Micro (the interpreter the camera runs), on the host:
agreement with LiteRT, the smallest tensor arena that works, and the work per frame.

TFLM registers all of its builtin ops, not only OpenMV's subset; the quantize stage
checks the op list against the firmware's.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import PipelineError


@contextlib.contextmanager
def c_stderr_silenced():
    """TFLM prints allocation failures from C to fd 2; bisection makes many on purpose."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def interpreter(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=arena)


def fits(model: bytes, arena: int) -> bool:
    try:
        with c_stderr_silenced():
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


def run(model: bytes, inputs: np.ndarray, arena: int) -> np.ndarray:
    """int8 outputs for int8 NHWC inputs, one frame at a time (batch 1 on the camera)."""
    m = interpreter(model, arena)
    out = []
    for x in inputs:
        m.set_input(x[None], 0)
        m.invoke()
        out.append(np.array(m.get_output(0))[0].copy())
    return np.stack(out)


def read_model(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: no such model")
    return path.read_bytes()

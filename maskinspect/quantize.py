"""Full-integer int8 TFLite through onnx2tf, hermetically, and the gates the model must pass
before it may go near a camera.

The OpenMV firmware feeds an int8 model `pixel - 128` and ignores the model's input
quantisation, so the model must take RGB in [0, 1] with scale 1/255 and zero point -128:
the calibration frames must reach 0 and 1 (a sample topping out at 0.8 silently gives a
scale of 0.8/255 and a model that sees every frame too bright).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .export import INPUT_NAME
from .tflite_graph import Graph

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


def calibration_sample(count: int, n: int) -> list[int]:
    """Positions of n calibration frames among count training frames: spread evenly, in order,
    so that a small sample still spans every class of a labels file grouped by class;
    all of them when n >= count."""
    if count <= 0 or n <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def pin_input_range(calibration: np.ndarray) -> list[str]:
    """Make a calibration sample (float, [0, 1]) reach exactly 0 and 1, in place.

    The camera's input range is 0-255 by construction, but frames averaged down to 64 px
    rarely hold an exact 0 (none of the 200 published training frames does). When the sample
    misses a bound, its single most extreme pixel is moved onto the bound: the input
    quantisation then comes out at exactly scale 1/255, zero point -128, while every inner
    range is still calibrated on the frames as they are. Returns a note per pinned bound.
    """
    flat = calibration.reshape(-1)
    notes = []
    for value, pick in ((0.0, np.argmin), (1.0, np.argmax)):
        if (flat == value).any():
            continue
        where = int(pick(flat))
        notes.append(f"pixel {flat[where] * 255:.1f} at flat index {where} set to {value * 255:.0f}")
        flat[where] = value
    return notes


@contextlib.contextmanager
def no_network():
    """Any connection attempt inside the block fails loudly: the build must be hermetic
    (onnx2tf downloads sample images when it is not given calibration data)."""
    def refuse(*_args, **_kwargs):
        raise PipelineError("onnx2tf tried to reach the network; the quantize stage must run offline")

    saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo)
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved


@contextlib.contextmanager
def _output_to(log: Path):
    """Send fds 1 and 2 to `log`: TensorFlow and onnx2tf print pages of tensor specs from C
    and Python even with non_verbose; the stage prints its own one-line summary."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("wb") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errors or lines or ["no output"])[-1][:300]


def convert(onnx_path: str | Path, calibration: np.ndarray, threads: int) -> bytes:
    """onnx2tf full-integer conversion (int8 in and out, per-channel weights); returns the bytes.

    `calibration` is float32 NHWC in [0, 1].
    """
    import torchvision  # noqa: F401 - loaded after TensorFlow, torchvision's triton segfaults (seen here)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process
    import onnx2tf
    import onnx2tf.onnx2tf as o2t_main
    import onnx2tf.utils.common_functions as o2t_common

    def local_sample_images() -> np.ndarray:
        # onnx2tf fetches 20 COCO images from GitHub for its output check whenever the model
        # has one 4-D, 3-channel input; give it our own frames instead.
        return calibration[:20]

    onnx_path = Path(onnx_path).resolve()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as work, no_network():
        work = Path(work)
        # onnx2tf overwrites the model it is given with its simplified version: give it a copy,
        # so that the stage's input keeps the bytes the export stage wrote (and dvc.lock records).
        model = work / onnx_path.name
        shutil.copyfile(onnx_path, model)
        np.save(work / "calibration.npy", calibration.astype(np.float32))
        saved = (o2t_main.download_test_image_data, o2t_common.download_test_image_data)
        o2t_main.download_test_image_data = local_sample_images
        o2t_common.download_test_image_data = local_sample_images
        os.chdir(work)  # onnx2tf also looks for a sample file in the working directory
        try:
            with _output_to(work / "onnx2tf.log"):
                onnx2tf.convert(
                    input_onnx_file_path=str(model),
                    output_folder_path=str(work / "out"),
                    output_integer_quantized_tflite=True,
                    quant_type="per-channel",
                    custom_input_op_name_np_data_path=[[INPUT_NAME, str(work / "calibration.npy"),
                                                        [[[[0.0, 0.0, 0.0]]]], [[[[1.0, 1.0, 1.0]]]]]],
                    input_quant_dtype="int8",
                    output_quant_dtype="int8",
                    non_verbose=True,
                )
        except SystemExit as exc:  # onnx2tf calls sys.exit on its own errors
            raise PipelineError(f"{onnx_path}: onnx2tf failed (exit {exc.code}): {_last_error(work / 'onnx2tf.log')}") from None
        finally:
            os.chdir(cwd)
            o2t_main.download_test_image_data, o2t_common.download_test_image_data = saved
        produced = work / "out" / f"{onnx_path.stem}_full_integer_quant.tflite"
        if not produced.exists():
            raise PipelineError(f"{onnx_path}: onnx2tf wrote no full-integer model")
        data = produced.read_bytes()
        shutil.rmtree(work / "out", ignore_errors=True)
    return data


def gate_problems(graph: Graph) -> list[str]:
    """Why the camera would refuse or misread this model; empty when it is fit to ship."""
    problems = []
    unsupported = [name for name in graph.op_names if name not in openmv_ops()]
    if unsupported:
        problems.append(f"ops outside OpenMV's TFLite Micro resolver: {', '.join(unsupported)}")
    for t in graph.data_path():
        if t.dtype != "INT8":
            problems.append(f"tensor {t.name!r} on the data path is {t.dtype}, not INT8 (hybrid or float model)")
            break
    for t in graph.tensors:
        if t.constant and t.dtype not in CONSTANT_TYPES:
            problems.append(f"constant tensor {t.name!r} is {t.dtype} (float weights: a hybrid model)")
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


def firmware_input(images: np.ndarray, input_size: int) -> np.ndarray:
    """What the OpenMV firmware feeds an int8 model: the frame resized (bilinear) to the
    input shape, then pixel - 128, as int8 NHWC."""
    from PIL import Image

    out = []
    for img in images:
        arr = np.asarray(img)
        if arr.shape[0] != input_size or arr.shape[1] != input_size:
            arr = np.asarray(Image.fromarray(arr).resize((input_size, input_size), Image.BILINEAR))
        out.append(arr)
    return (np.stack(out).astype(np.int16) - 128).astype(np.int8)


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

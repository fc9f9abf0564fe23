"""ONNX to a full-integer int8 TFLite model through onnx2tf, hermetically, with its calibration.

The calibration frames must reach pixel values 0 and 255: the camera's input range is 0-255 by
construction and the input must quantise at exactly scale 1/255, zero point -128 (see gates.py).

onnx2tf is used as a library, but it was written as a program: it rewrites the model it is
given, looks for files in the working directory, downloads sample images when it has none,
reseeds the global random generators and prints pages from C. `convert` gives it a copy of the
model in a private folder, its own frames instead of the download, no network, and puts the
working directory, the socket functions, the random generators, its patched internals and the
output descriptors back however the conversion ends.
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from maskinspect.capture import redirected
from maskinspect.errors import PipelineError
from maskinspect.model.export import INPUT_NAME


def calibration_sample(count: int, n: int) -> list[int]:
    """Positions of n calibration frames among count training frames: spread evenly, in order,
    so that a small sample still spans every class of a labels file grouped by class;
    all of them when n >= count."""
    if count <= 0 or n <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(n, count)).round().astype(int).tolist()))


def pin_input_range(calibration: np.ndarray) -> list[str]:
    """Make a calibration sample (float, [0, 1]) reach exactly 0 and 1, in place.

    Frames averaged down to 64 px rarely hold an exact 0 (none of the 200 published training
    frames does). When the sample misses a bound, its single most extreme pixel is moved onto
    the bound: the input quantisation then comes out at exactly scale 1/255, zero point -128,
    while every inner range is still calibrated on the frames as they are. Returns a note per
    pinned bound.
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
def no_network() -> Iterator[None]:
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
def _contained(work: Path, sample_images: np.ndarray) -> Iterator[None]:
    """onnx2tf's process-wide habits, undone on the way out: working directory, random
    generators, its sample-image download (given our frames), and no network meanwhile."""
    import onnx2tf.onnx2tf as o2t_main
    import onnx2tf.utils.common_functions as o2t_common

    cwd = os.getcwd()
    rng_state = random.getstate(), np.random.get_state()
    patched = (o2t_main.download_test_image_data, o2t_common.download_test_image_data)
    # onnx2tf fetches 20 COCO images from GitHub for its output check whenever the model has one
    # 4-D, 3-channel input; it gets our own frames instead.
    o2t_main.download_test_image_data = o2t_common.download_test_image_data = lambda: sample_images
    try:
        with no_network():
            os.chdir(work)  # onnx2tf also looks for a sample file in the working directory
            yield
    finally:
        os.chdir(cwd)
        o2t_main.download_test_image_data, o2t_common.download_test_image_data = patched
        random.setstate(rng_state[0])
        np.random.set_state(rng_state[1])


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return (errors or lines or ["no output"])[-1][:300]


def convert(onnx_path: str | Path, calibration: np.ndarray, threads: int, dense_per_channel: bool = False) -> bytes:
    """ONNX to full-integer int8 TFLite (int8 in and out); returns the bytes.

    onnx2tf turns the ONNX graph into a TensorFlow model (NHWC); TensorFlow's own converter then
    quantises it once, calibrated on `calibration` (float32 NHWC in [0, 1]), with the settings
    onnx2tf uses for its full-integer model. Convolution weights are quantised per channel; the
    dense head's per tensor unless `dense_per_channel`: the TFLite Micro that OpenMV firmware
    4.x links refuses a per-channel FULLY_CONNECTED ("not yet supported").
    """
    # Importing TensorFlow, torchvision and onnx2tf the first time reseeds the global generators:
    # they are put back as they were before the call.
    rng_state = random.getstate(), np.random.get_state()
    import torchvision  # noqa: F401 - loaded after TensorFlow, torchvision's triton segfaults (seen here)
    import tensorflow as tf
    import tf_keras

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process
    import onnx2tf

    random.setstate(rng_state[0])
    np.random.set_state(rng_state[1])

    onnx_path = Path(onnx_path).resolve()
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as tmp:
        work = Path(tmp)
        # onnx2tf overwrites the model it is given with its simplified version: give it a copy,
        # so that the stage's input keeps the bytes the export stage wrote (and dvc.lock records).
        model_file = work / onnx_path.name
        shutil.copyfile(onnx_path, model_file)
        log = work / "onnx2tf.log"
        try:
            with _contained(work, calibration[:20]), redirected(log):
                model = onnx2tf.convert(input_onnx_file_path=str(model_file), output_folder_path=str(work / "out"),
                                        disable_model_save=True, non_verbose=True)
                archive = tf_keras.export.ExportArchive()
                archive.add_endpoint(name="serving_default", fn=lambda *inputs: model(inputs),
                                     input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs])
                archive.write_out(str(work / "saved_model"))
                converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model"))
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter._experimental_disable_per_channel_quantization_for_dense_layers = not dense_per_channel
                name = model.inputs[0].name

                def representative():
                    for i in range(len(calibration)):
                        yield {name: tf.convert_to_tensor(calibration[i:i + 1].astype(np.float32))}

                converter.representative_dataset = representative
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
                return converter.convert()
        except SystemExit as exc:  # onnx2tf calls sys.exit on its own errors
            raise PipelineError(f"{onnx_path}: onnx2tf failed (exit {exc.code}): {_last_error(log)}") from None

"""Deployment stages: ONNX parity, int8 gates (each failing on a model built to break it),
hermetic conversion, TFLite Micro checks, the bundle, and the bundle on an emulated camera."""
import csv
import hashlib
import json
import shutil
import socket
import subprocess

import numpy as np
import pytest

from conftest import run_script, tiny_params, write_params
from maskinspect import CLASSES
from maskinspect.device import runtime
from maskinspect.model import tflite_graph
from maskinspect.errors import PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.device.emulator import Emulator
from maskinspect.model.convert import calibration_sample, no_network, pin_input_range
from maskinspect.device.gates import gate_problems
from maskinspect.device.camera import camera_input


def shards(build):
    """The frame shards of a build at the model's size (the camera shard holds sensor-size frames)."""
    return sorted(p for p in (build / "data" / "frames").glob("*.npy") if not p.name.startswith("camera-"))


def camera(build):
    return sorted((build / "data" / "frames").glob("camera-*.npy"))


def bundle_outputs(folder):
    return ["--bundle-model", f"{folder}/openmv/model.tflite", "--bundle-labels", f"{folder}/openmv/model.txt",
            "--bundle-main", f"{folder}/openmv/main.py", "--manifest", f"{folder}/openmv/manifest.json",
            "--zip", f"{folder}/openmv.zip", "--summary", f"{folder}/summary.json"]


def test_float_and_int8_figures_are_reported(tiny_build):
    export = json.loads((tiny_build / "metrics/export.json").read_text())
    assert export == {"frames": export["frames"], "logits_within_tolerance": True, "opset": 13, "tolerance": 1e-4}
    assert "max |logit diff|" in (tiny_build / "logs/export_onnx/export_onnx.log").read_text()  # measured: logged
    q = json.loads((tiny_build / "metrics/quantize.json").read_text())
    assert q["input"]["dtype"] == "INT8" and q["input"]["zero_point"] == -128
    assert abs(q["input"]["scale"] - 1 / 255) < 1e-9
    assert set(q["ops"]) <= {"ADD", "CONV_2D", "FULLY_CONNECTED", "MEAN", "MUL", "PAD"}
    assert set(q["int8"]["recall"]) == set(CLASSES)
    assert q["drop"]["balanced_accuracy"] == pytest.approx(q["float"]["balanced_accuracy"]
                                                           - q["int8"]["balanced_accuracy"], abs=1e-4)


def test_the_int8_figures_are_the_camera_interpreters(tiny_build):
    """quantize scores the int8 model in TFLite Micro, as the camera runs it, on the stored frames
    and through the camera's input path: recomputed here frame by frame, they are the same."""
    from maskinspect.model.evaluation import labels_of, report
    from maskinspect.device.runtime import host_input

    with (tiny_build / "data/labels/videos-test.csv").open() as f:
        rows = list(csv.DictReader(f))
    ids, truth = [r["frame_id"] for r in rows], [r["label"] for r in rows]
    model = (tiny_build / "models/classifier_int8.tflite").read_bytes()
    arena = runtime.smallest_arena(model)
    stored = labels_of(runtime.run_tflm(model, host_input(load_shards(shards(tiny_build)).take(ids), 64), arena))
    through_camera = labels_of(runtime.run_tflm(model, camera_input(load_shards(camera(tiny_build)).take(ids), 64), arena))
    with (tiny_build / "metrics/int8_predictions.csv").open() as f:
        assert [r["predicted"] for r in csv.DictReader(f)] == stored
    q = json.loads((tiny_build / "metrics/quantize.json").read_text())
    assert q["camera"]["confusion"] == report(truth, through_camera)["confusion"]
    assert q["int8"]["confusion"] == report(truth, stored)["confusion"]


def test_export_fails_over_its_tolerance_and_leaves_no_model(tiny_build, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params(**{"export.tolerance": 1e-12}))
    result = run_script("export_onnx.py", "--classifier", tiny_build / "models/classifier.safetensors",
                        "--frames", *shards(tiny_build), "--test-labels", tiny_build / "data/labels/videos-test.csv",
                        "--onnx", "m.onnx", "--metrics", "m.json", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "ONNX logits differ from torch by" in result.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


def test_export_bytes_do_not_depend_on_the_cpu_path(tiny_build, tmp_path):
    """MKL picks its code path by CPU; forcing two paths stands in for two machines. The
    exporter's own float32 batch-norm folding differed in the last bit between them."""
    write_params(tmp_path / "params.yaml", tiny_params())
    exported = []
    for path in ("AVX2", "COMPATIBLE"):
        run_script("export_onnx.py", "--classifier", tiny_build / "models/classifier.safetensors",
                   "--frames", *shards(tiny_build), "--test-labels", tiny_build / "data/labels/videos-test.csv",
                   "--onnx", f"{path}.onnx", "--metrics", f"{path}.json", cwd=tmp_path, env={"MKL_CBWR": path})
        exported.append((tmp_path / f"{path}.onnx").read_bytes())
    assert exported[0] == exported[1] == (tiny_build / "models/classifier.onnx").read_bytes()


def test_batchnorm_folding_keeps_the_outputs(tiny_build):
    import onnx
    import torch

    from maskinspect.model import models
    from maskinspect.model.export import fold_batchnorm

    model = models.build_classifier(tiny_params()["model"])
    models.load_into(model, models.load_weights(tiny_build / "models/classifier.safetensors"), "tiny")
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 13  # 12 convs' + the input's
    assert [type(m) for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)] == [torch.nn.BatchNorm2d]
    graph = onnx.load(tiny_build / "models/classifier.onnx").graph
    assert [n.op_type for n in graph.node].count("BatchNormalization") == 1  # the input's, before conv1


# ---- gates: models built to break them -------------------------------------------------------

def keras_model(extra=None):
    import tensorflow as tf

    inp = tf.keras.Input((16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    if extra:
        x = extra(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(3)(x))


def to_tflite(model, path, *, int8=True, top=1.0):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def data():
            for _ in range(8):
                yield [(rng.random((1, 16, 16, 3)) * top).astype(np.float32)]
            yield [np.zeros((1, 16, 16, 3), np.float32)]
            yield [np.full((1, 16, 16, 3), top, np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return tflite_graph.read(path)


def test_gate_passes_a_proper_int8_model(tmp_path):
    assert gate_problems(to_tflite(keras_model(), tmp_path / "ok.tflite")) == []


def test_gate_refuses_a_float_model(tmp_path):
    problems = gate_problems(to_tflite(keras_model(), tmp_path / "float.tflite", int8=False))
    assert any("FLOAT32, not INT8" in p for p in problems)


def test_gate_refuses_an_op_the_firmware_lacks(tmp_path):
    import tensorflow as tf

    gelu = tf.keras.layers.Lambda(lambda t: tf.nn.gelu(t, approximate=False))
    graph = to_tflite(keras_model(gelu), tmp_path / "gelu.tflite")
    assert "GELU" in graph.op_names
    problems = gate_problems(graph)
    assert any("ops outside OpenMV's TFLite Micro resolver: GELU" in p for p in problems)


def test_gate_refuses_a_model_calibrated_short_of_white(tmp_path):
    problems = gate_problems(to_tflite(keras_model(), tmp_path / "dim.tflite", top=0.8))
    assert any("input scale is" in p and "needs 1/255" in p for p in problems)


def test_bundle_stage_refuses_a_model_that_fails_a_gate(tiny_build, tmp_path):
    """Stages call the gates too: the bundle stage re-checks the model before shipping it."""
    bad = tmp_path / "float.tflite"
    to_tflite(keras_model(), bad, int8=False)
    write_params(tmp_path / "params.yaml", tiny_params())
    result = run_script("bundle.py", "--model", bad, "--main", tiny_build / "openmv/main.py",
                        "--quantize-metrics", tiny_build / "metrics/quantize.json",
                        "--tflm-metrics", tiny_build / "metrics/tflm.json",
                        "--firmware-metrics", tiny_build / "metrics/firmware.json", *bundle_outputs("dist"),
                        cwd=tmp_path, check=False)
    assert result.returncode == 1 and "not fit for the camera" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_calibration_range_is_pinned_to_the_full_pixel_range():
    x = np.full((2, 4, 4, 3), 0.5, np.float32)
    x[0, 0, 0, 0], x[1, 3, 3, 2] = 0.1, 0.9
    notes = pin_input_range(x)
    assert x.min() == 0.0 and x.max() == 1.0 and len(notes) == 2
    assert (x == 0.5).sum() == x.size - 2  # nothing else moved


def test_calibration_sample_spans_a_labels_file_grouped_by_class():
    labels = ["bad"] * 37 + ["good"] * 75 + ["no_mask"] * 87  # the published train/ split
    pick = calibration_sample(len(labels), 20)
    assert len(pick) == 20 and pick[0] == 0 and pick[-1] == len(labels) - 1 and pick == sorted(pick)
    assert [labels[i] for i in pick].count("bad") == 4  # the first 20 would be bad only
    assert {labels[i] for i in pick} == {"bad", "good", "no_mask"}
    assert calibration_sample(199, 200) == list(range(199)) == calibration_sample(199, 199)
    assert calibration_sample(5, 1) == [0] and calibration_sample(0, 10) == []


def test_network_guard_refuses_connections():
    with no_network():
        with pytest.raises(PipelineError, match="must run offline"):
            socket.create_connection(("127.0.0.1", 9))
    socket.getaddrinfo("localhost", None)  # restored afterwards


def test_a_failed_conversion_leaves_no_process_wide_change(tmp_path):
    """onnx2tf changes the working directory, patches sockets and prints from C: all of it is
    undone even when the conversion fails."""
    import os
    import random

    from maskinspect.model.convert import convert

    import onnx2tf  # noqa: F401 - loaded (with TensorFlow's own descriptors) before counting
    import tensorflow  # noqa: F401

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    before = (os.getcwd(), socket.socket.connect, socket.create_connection, socket.getaddrinfo,
              sorted(os.listdir("/proc/self/fd")), random.getstate(), np.random.get_state()[1].tobytes())
    with pytest.raises(Exception):
        convert(bad, np.zeros((2, 8, 8, 3), np.float32), threads=1)
    after = (os.getcwd(), socket.socket.connect, socket.create_connection, socket.getaddrinfo,
             sorted(os.listdir("/proc/self/fd")), random.getstate(), np.random.get_state()[1].tobytes())
    assert after == before
    os.write(1, b"")  # stdout and stderr are the test's own again
    os.write(2, b"")


@pytest.mark.slow  # a whole quantize, about 30 s; CI's step 3 runs it
def test_quantize_runs_with_networking_blocked(tiny_build, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("unshare cannot make a network namespace here")
    write_params(tmp_path / "params.yaml", tiny_params())
    probe = subprocess.run(["unshare", "-rn", "python3", "-c",
                            "import socket; socket.create_connection(('pypi.org', 443), timeout=3)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0  # no network in the namespace
    b = tiny_build
    run_script("export_onnx.py", "--classifier", b / "models/classifier.safetensors", "--frames", *shards(b),
               "--test-labels", b / "data/labels/videos-test.csv", "--onnx", "c.onnx", "--metrics", "e.json", cwd=tmp_path)
    exported = (tmp_path / "c.onnx").read_bytes()
    run_script("quantize.py", "--onnx", tmp_path / "c.onnx", "--classifier", b / "models/classifier.safetensors",
               "--frames", *shards(b), "--camera", *camera(b), "--train-labels", b / "data/labels/videos-train.csv",
               "--test-labels", b / "data/labels/videos-test.csv",
               "--model", "q.tflite", "--metrics", "q.json", "--predictions", "q.csv", "--confusion", "q.png",
               cwd=tmp_path, prefix=("unshare", "-rn"))
    # Same bytes as the build's own run: deterministic, and no sample images fetched.
    assert (tmp_path / "q.tflite").read_bytes() == (b / "models/classifier_int8.tflite").read_bytes()
    # The stage reads its input and writes only its outputs: onnx2tf's in-place rewrite of the
    # model it converts must not reach the export stage's file.
    assert (tmp_path / "c.onnx").read_bytes() == exported


# ---- TFLite Micro --------------------------------------------------------------------------

def test_tflm_metrics_and_arena_bound(tiny_build):
    m = json.loads((tiny_build / "metrics/tflm.json").read_text())
    model = (tiny_build / "models/classifier_int8.tflite").read_bytes()
    assert m["model_bytes"] == len(model) < 128 * 1024
    arena = m["arena_bytes"]
    assert runtime.fits(model, arena) and not runtime.fits(model, arena - 16)
    assert m["macs"] == 33_357_920 // 2  # every conv and the head: torch's FLOP count / 2
    assert m["litert_agreement"]["argmax_identical"] >= 0.95 and m["litert_agreement"]["max_diff_lsb"] <= 3


def test_tflm_budget_gate(tiny_build, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params(**{"tflm.max_arena_bytes": 50_000}))
    result = run_script("tflm_check.py", "--model", tiny_build / "models/classifier_int8.tflite",
                        "--camera", *camera(tiny_build), "--test-labels", tiny_build / "data/labels/videos-test.csv",
                        "--metrics", "t.json", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "over tflm.max_arena_bytes 50000" in result.stderr
    assert not (tmp_path / "t.json").exists()


# ---- the bundle ----------------------------------------------------------------------------

def test_bundle_manifest_describes_its_files(tiny_build):
    folder = tiny_build / "dist/openmv"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert (folder / "model.txt").read_text() == "bad\ngood\nno_mask\n"
    assert (folder / "main.py").read_bytes() == (tiny_build / "openmv/main.py").read_bytes()
    firmware = json.loads((tiny_build / "metrics/firmware.json").read_text())
    assert manifest["metrics"]["arena_bytes"] == firmware["arena_bytes"]
    assert manifest["firmware"]["minimum"] == "4.5.6" == firmware["minimum_firmware"]
    assert manifest["metrics"]["latency_ms"]["band"] == firmware["latency"]["ms_band"]
    assert set(manifest["source"]) == {"revision", "dirty"}


def test_bundle_zip_is_byte_stable(tiny_build, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    b = tiny_build
    args = ["--model", b / "models/classifier_int8.tflite", "--main", b / "openmv/main.py",
            "--quantize-metrics", b / "metrics/quantize.json", "--tflm-metrics", b / "metrics/tflm.json",
            "--firmware-metrics", b / "metrics/firmware.json"]
    for run in ("a", "b"):
        run_script("bundle.py", *args, *bundle_outputs(run), cwd=tmp_path)
    assert (tmp_path / "a/openmv.zip").read_bytes() == (tmp_path / "b/openmv.zip").read_bytes()


@pytest.mark.parametrize("firmware", ["4.5.6", "4.7.0"])
def test_bundle_main_py_runs_on_an_emulated_camera(tiny_build, firmware):
    """main.py, unmodified, on emulated sensor/ml/pyb/time modules, with test frames at the
    sensor's size: its answers are the int8 model's on exactly what the camera feeds it."""
    with (tiny_build / "data/labels/videos-test.csv").open() as f:
        rows = list(csv.DictReader(f))[:12]
    sensor = load_shards(camera(tiny_build)).take([r["frame_id"] for r in rows])
    run = Emulator(sensor, max_frames=len(rows), firmware=firmware).run(tiny_build / "dist/openmv/main.py")
    assert run.frames == len(rows)
    header, lines = run.lines[0], run.lines[1:]
    assert header.startswith("model: ") and "['bad', 'good', 'no_mask']" in header
    assert len(lines) == len(rows)
    printed = [line.split()[0] for line in lines]
    assert all(p in CLASSES for p in printed)
    assert all(0.33 <= float(line.split()[1]) <= 1.0 for line in lines)  # confidences, a softmax's top share
    # The model got the camera's input path of each frame (RGB565, the firmware's scaling, XOR 0x80)...
    fed = camera_input(sensor, 64)
    assert np.array_equal(np.stack(run.input_fed), fed)
    # ...and the printed classes are the int8 model's answers on it, in TFLite Micro.
    model = (tiny_build / "dist/openmv/model.tflite").read_bytes()
    answers = runtime.run_tflm(model, fed, runtime.smallest_arena(model)).argmax(1)
    assert printed == [CLASSES[i] for i in answers]
    # LEDs follow the class: 1 red for bad, 2 green for good, 3 blue for no_mask, one at a time.
    led_of = {"bad": 1, "good": 2, "no_mask": 3}
    for label, state in zip(printed, run.led_states):
        assert state == {n: n == led_of[label] for n in (1, 2, 3)}

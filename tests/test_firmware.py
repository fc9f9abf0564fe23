"""The model in OpenMV's own TensorFlow Lite Micro libraries on an emulated Cortex-M7: a model the
firmware refuses is refused with the library's own words, the bundle's model passes on every
firmware claimed, and instruction counts are exact."""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import keras_int8, outside_input, pin, run_script, tiny_params, write_params
from maskinspect.device import firmware
from maskinspect.device.gates import openmv_ops

LIBTFLM = [pin("openmv-libtflm-b42a9d8"), pin("openmv-libtflm-73eb1aa")]  # what firmware_check is given


def firmware_check(build: Path, model: Path, cwd: Path, **env):
    write_params(cwd / "params.yaml", tiny_params())
    return run_script("firmware_check.py", "--model", model, "--camera", *sorted((build / "data/frames").glob("camera-*.npy")),
                      "--test-labels", build / "data/labels/videos-test.csv", "--libraries", *LIBTFLM,
                      "--metrics", "firmware.json", cwd=cwd, check=False, env=env)


def test_the_bundle_prepares_and_runs_on_every_firmware_claimed(tiny_build):
    m = json.loads((tiny_build / "metrics/firmware.json").read_text())
    claimed = [c["firmware"] for c in tiny_params()["firmware"]["claims"]]
    assert m["firmware_verified"] == claimed and m["minimum_firmware"] == "4.5.6"
    for commit, lib in m["libraries"].items():
        assert lib["host_agreement"]["argmax_identical"] == 1.0 and lib["host_agreement"]["max_diff_lsb"] <= 1
        assert 50_000 < lib["arena_bytes"] <= tiny_params()["tflm"]["max_arena_bytes"]
    per_op = m["libraries"]["73eb1aa"]["instructions_per_op"]
    assert set(per_op) >= {"CONV_2D", "FULLY_CONNECTED"}
    assert 0.95 * m["instructions"] < sum(per_op.values()) <= m["instructions"] * 1.01  # the ops are the invoke
    latency = m["latency"]
    assert latency["ms_band"] == [round(m["instructions"] * c / 480e3, 1) for c in (1.0, 1.5)]
    assert 1.0 < latency["calibration"]["cpi"] < 1.5  # the 2020 model's 150 ms on the board
    manifest = json.loads((tiny_build / "dist/openmv/manifest.json").read_text())
    assert manifest["firmware"]["minimum"] == "4.5.6" and manifest["firmware"]["verified"] == claimed


@pytest.mark.slow
def test_a_model_of_another_input_size_is_timed_beside_the_2020_model_at_its_own(tiny_build, tmp_path):
    """An 80 px model (a strided-stem candidate): ours runs at 80 px, the 2020 calibration model at
    its own 64 px, and the latency is calibrated on it."""
    model = keras_int8(tmp_path / "eighty.tflite", dense_per_channel=False, size=80)
    write_params(tmp_path / "params.yaml", tiny_params(**{"model.input_size": 80}))
    result = run_script("firmware_check.py", "--model", model, "--camera",
                        *sorted((tiny_build / "data/frames").glob("camera-*.npy")),
                        "--test-labels", tiny_build / "data/labels/videos-test.csv", "--libraries", *LIBTFLM,
                        "--calibration-model", pin("published-model"),
                        "--metrics", "firmware.json", cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    latency = json.loads((tmp_path / "firmware.json").read_text())["latency"]
    assert 1.0 < latency["calibration"]["cpi"] < 1.5 and "ms_calibrated" in latency


def test_a_per_channel_dense_model_is_refused_with_the_librarys_own_message(tiny_build, tmp_path):
    model = keras_int8(tmp_path / "per-channel.tflite", dense_per_channel=True)
    result = firmware_check(tiny_build, model, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("firmware_check: error: firmware 4.6.20, 4.7.0, 4.8.1 (libtflm 73eb1aa) cannot run ")
    assert "FullyConnected per-channel quantization not yet supported" in lines[0]
    assert "(and 1 more)" in lines[0]  # 4.5.6's library refuses it too, without saying why
    assert not (tmp_path / "firmware.json").exists()


def test_instruction_counts_are_exact(tmp_path):
    """A fixed model on a fixed library: the same count, op by op, every run."""
    model = keras_int8(tmp_path / "fixed.tflite", dense_per_channel=False).read_bytes()
    inputs = np.random.default_rng(1).integers(-128, 128, (2, 64, 64, 3)).astype(np.int8)
    lib = firmware.library(outside_input("openmv-libtflm-73eb1aa"), "73eb1aa")
    builder = firmware.Builder(tmp_path / "build", sorted(openmv_ops()))
    program = builder.program(lib, True, model, inputs)  # the library that times each op
    runs = [firmware.run_program(program) for _ in range(2)]
    assert all(r.ok for r in runs)
    assert runs[0].ticks == runs[1].ticks and runs[0].ops == runs[1].ops and runs[0].arena == runs[1].arena
    assert runs[0].instructions() > 100_000
    assert [name for name, _ in runs[0].ops] == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]


def test_a_missing_toolchain_is_one_line_saying_what_to_install(tiny_build, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    result = firmware_check(tiny_build, tiny_build / "models/classifier_int8.tflite", tmp_path, PATH=str(bare))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "firmware_check: error: arm-none-eabi-g++ not found: install Debian's gcc-arm-none-eabi, "
        "libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, qemu-system-arm (apt-get install "
        "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm)"]


def test_the_2020_model_can_be_timed_as_int8(tmp_path):
    published = outside_input("published-model")
    from maskinspect.model import tflite_graph

    rewritten = tmp_path / "published-int8.tflite"
    rewritten.write_bytes(firmware.int8_for_timing(published.read_bytes()))
    before, after = tflite_graph.read(published), tflite_graph.read(rewritten)
    assert {t.dtype for t in after.tensors} == {"INT8", "INT32"}
    assert [op.name for op in after.ops] == [op.name for op in before.ops]
    assert all(a.zero_point == tuple(z - 128 for z in b.zero_point)
               for a, b in zip(after.tensors, before.tensors) if b.dtype == "UINT8")

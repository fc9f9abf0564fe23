"""Stage firmware_check: the int8 model in OpenMV's own TensorFlow Lite Micro, on an emulated Cortex-M7.

For every firmware the bundle claims (firmware.claims), the model is linked with the libtflm that
firmware links (--libraries/<commit>/) into a bare-metal program, run under QEMU (mps2-an500,
Cortex-M7) on the first firmware.frames test frames as the camera feeds them, and must prepare,
run, and give the host TFLite Micro's outputs (argmax identical, logits within 1 LSB).

In:  --model int8 .tflite, --camera (the labelled frames at the sensor's size), --test-labels,
     --libraries (the pins of OpenMV's prebuilt libtflm, pins/openmv-libtflm-<commit>.yaml, one per
     commit the claims name), --calibration-model (the 2020 model or its pin, whose 150 ms on the
     board turn instruction counts into milliseconds), params.yaml (model.input_size, firmware.*,
     tflm.max_arena_bytes)
Out: --metrics JSON: per library the firmware it serves, the arena it needs, the instructions
     of one inference (total and per op), agreement with the host; the latency band at
     firmware.cpu_mhz; the oldest firmware verified.
Fails with the library's own message when a claimed firmware cannot prepare or run the model.
"""
from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from maskinspect.workflow import runner as cli
from maskinspect.device import firmware, runtime
from maskinspect.model import tflite_graph
from maskinspect.atomic import write_json
from maskinspect.device.camera import camera_input
from maskinspect.errors import PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.device.gates import openmv_ops
from maskinspect.data.labels import read_labelled, shown
from maskinspect.workflow import pinned


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def per_op(ops: list[tuple[str, int]]) -> dict[str, int]:
    """Instructions per op type (summed over the graph's nodes)."""
    total: dict[str, int] = defaultdict(int)
    for name, ticks in ops:
        total[name] += ticks * firmware.INSTRUCTIONS_PER_TICK
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


@cli.stage("firmware_check")
def main(args, params):
    import numpy as np

    cfg = params["firmware"]
    tools = firmware.toolchain()
    ops = sorted(openmv_ops())
    model = runtime.read_model(args.model)
    ids = read_labelled(args.test_labels)[0][: cfg["frames"]]
    if not ids:
        raise PipelineError(f"{shown(args.test_labels)}: no test frames to run on the emulated camera")
    sensor = load_shards(args.camera).take(ids, "test frame")
    inputs = camera_input(sensor, params["model"]["input_size"])
    host = runtime.run_tflm(model, inputs, runtime.smallest_arena(model)).astype(np.int16)

    by_commit = firmware.claims_by_library(cfg["claims"])
    libs = firmware.pinned_libraries(args.libraries, by_commit)
    with tempfile.TemporaryDirectory(prefix="harness-") as work:
        builder = firmware.Builder(Path(work), ops)
        builder.prepare([(lib, logs) for lib in libs.values() for logs in (False, True) if lib.archive(logs)])
        libraries = check_claims(builder, libs, by_commit, model, inputs, host, args.model, len(ids))
        timing = None
        if args.calibration_model:
            calibration_model = pinned.local(args.calibration_model)
            newest = newest_library(libraries)
            # the 2020 model takes its own input size (64 px), whatever ours takes
            calibration_size = tflite_graph.read(calibration_model).input().shape[1]
            timing = firmware.check(builder, libs[newest], firmware.int8_for_timing(
                runtime.read_model(calibration_model)), np.zeros((1, calibration_size, calibration_size, 3), np.int8),
                per_op=False)
            if not timing.ok:
                raise PipelineError(f"{cfg['calibration_model']}: cannot be timed on libtflm {newest}: {timing.reason()}")
    write_json(args.metrics, report(libraries, timing, args, cfg, params, tools))


def newest_library(libraries: dict) -> str:
    return max(libraries, key=lambda c: max(version_key(v) for v in libraries[c]["firmware"]))


def check_claims(builder, libs, by_commit, model, inputs, host, model_path, frames) -> dict:
    """Every claimed firmware's library prepares and runs the model and gives the host's outputs;
    raise with the library's own words (those that say why first) when one does not."""
    import numpy as np

    libraries, failures = {}, []
    for commit, versions in by_commit.items():
        # The instructions are counted on a mid-grey frame (int8 zeros) placed first: the one figure
        # `maskinspect check` counts too, for any model; the test frames after it check the outputs.
        run = firmware.check(builder, libs[commit], model, np.concatenate([np.zeros_like(inputs[:1]), inputs]))
        served = ", ".join(sorted(versions, key=version_key))
        if not run.ok:
            failures.append((bool(run.messages), f"firmware {served} (libtflm {commit}) cannot run {model_path}: "
                                                 f"{run.reason()}"))
            continue
        got = np.array(run.outputs[1:], dtype=np.int16)
        lsb = int(np.abs(got - host).max())
        if (got.argmax(1) != host.argmax(1)).any() or lsb > 1:
            failures.append((True, f"firmware {served} (libtflm {commit}): outputs differ from the host's TFLite "
                                   f"Micro by up to {lsb} LSB on {frames} test frames"))
            continue
        libraries[commit] = {
            "firmware": sorted(versions, key=version_key),
            "arena_bytes": run.arena,
            "instructions": run.instructions(),
            "instructions_per_op": per_op(run.ops),
            "host_agreement": {"frames": frames, "argmax_identical": 1.0, "max_diff_lsb": lsb},
        }
    if failures:
        failures.sort(key=lambda f: not f[0])  # a library's own message first
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise PipelineError(failures[0][1] + more)
    return libraries


def report(libraries: dict, timing, args, cfg: dict, params: dict, tools: dict) -> dict:
    """The figures firmware_check writes; fails over the arena budget."""
    newest = newest_library(libraries)
    instructions = libraries[newest]["instructions"]
    mhz = cfg["cpu_mhz"]
    low, high = cfg["cpi"]
    latency = {"cpu_mhz": mhz, "cpi_band": [low, high],
               "ms_band": [round(instructions * low / mhz / 1e3, 1), round(instructions * high / mhz / 1e3, 1)],
               "library": newest}
    if timing is not None:
        cpi = cfg["calibration_ms"] * 1e3 * mhz / timing.instructions()
        latency["calibration"] = {"model": str(cfg["calibration_model"]), "instructions": timing.instructions(),
                                  "measured_ms": cfg["calibration_ms"], "cpi": round(cpi, 3)}
        latency["ms_calibrated"] = round(instructions * cpi / mhz / 1e3, 1)
    arena = max(lib["arena_bytes"] for lib in libraries.values())
    budget = params["tflm"]["max_arena_bytes"]
    if arena > budget:
        raise PipelineError(f"{args.model}: the firmware's library needs a {arena} byte arena, over "
                            f"tflm.max_arena_bytes {budget}")
    verified = sorted((v for lib in libraries.values() for v in lib["firmware"]), key=version_key)
    calibrated = f", {latency['ms_calibrated']} ms calibrated" if "ms_calibrated" in latency else ""
    print(f"firmware_check: firmware {', '.join(verified)} run the model; {instructions / 1e6:.2f} M instructions "
          f"an inference on libtflm {newest} ({latency['ms_band'][0]}-{latency['ms_band'][1]} ms at {mhz} MHz"
          f"{calibrated}), arena {arena} B", file=sys.stderr)
    return {
        "libraries": libraries,
        "firmware_verified": verified,
        "minimum_firmware": verified[0],
        "arena_bytes": arena,
        "instructions": instructions,
        "latency": latency,
        "toolchain": tools,
    }


if __name__ == "__main__":
    sys.exit(main())

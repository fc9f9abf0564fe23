"""The model in OpenMV's own TensorFlow Lite Micro, on an emulated Cortex-M7.

OpenMV firmware links a prebuilt TFLM library (openmv/libtflm) older than PyPI's tflite-micro:
a model the host runtime accepts can still fail to prepare on the camera (per-channel
FULLY_CONNECTED, refused from May to September 2024, is one). So the model is linked into a
small bare-metal program (harness.cc, startup.c, mps2_an500.ld beside this file) with each
library as it is, built with Debian's gcc-arm-none-eabi and newlib for the H7's core
(Cortex-M7, double-precision FPU, hard float), and run under QEMU's mps2-an500 board. The
program registers the firmware's ops, prepares the model, runs it on the given frames and
reports outputs, the arena it needs, and instruction counts: under `-icount shift=0` one
instruction is one nanosecond of virtual time, and the board's 25 MHz timer ticks once per 40
instructions. Counts are exact for a given library, toolchain and QEMU; cycles need a board.
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PipelineError

HERE = Path(__file__).parent
SOURCES = ("harness.cc", "startup.c", "mps2_an500.ld")
CPU_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]
QEMU = ["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-nographic", "-monitor", "none",
        "-serial", "none", "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0,align=off,sleep=off"]
INSTRUCTIONS_PER_TICK = 40  # 1 ns per instruction, a 25 MHz timer
INSTALL = ("install Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm "
           "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
# Firmware extras the libraries leave to the firmware (signal processing, the Ethos-U NPU):
# registering them would need code the libraries do not carry.
NOT_IN_LIBRARY = {"DELAY", "ENERGY", "ETHOS_U", "FFT_AUTO_SCALE", "FILTER_BANK", "FILTER_BANK_LOG",
                  "FILTER_BANK_SPECTRAL_SUBTRACTION", "FILTER_BANK_SQUARE_ROOT", "FRAMER", "IRFFT",
                  "OVERLAP_ADD", "PCAN", "RFFT", "STACKER", "WINDOW"}


@dataclass(frozen=True)
class Library:
    """One of OpenMV's prebuilt TFLM libraries: <folder>/<commit>/lib and include."""
    commit: str
    folder: Path

    @property
    def include(self) -> Path:
        return self.folder / "include"

    def archive(self, logs: bool = False) -> Path | None:
        path = self.folder / "lib" / f"libtflm-cortex-m7+fp-release{'_with_logs' if logs else ''}.a"
        return path if path.is_file() else None


def library(root: Path, commit: str) -> Library:
    lib = Library(commit, root / commit)
    if lib.archive() is None or not lib.include.is_dir():
        raise PipelineError(f"{lib.folder}: no OpenMV TFLite Micro library here (expected lib/"
                            f"libtflm-cortex-m7+fp-release.a and include/; OpenMV's libtflm at commit {commit})")
    return lib


@functools.lru_cache(maxsize=1)
def toolchain() -> dict[str, str]:
    """The cross compiler, its C library and QEMU, with their versions; one line when missing."""
    for tool in ("arm-none-eabi-g++", "arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            raise PipelineError(f"{tool} not found: {INSTALL}")
    flags = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]
    libc = subprocess.run(["arm-none-eabi-gcc", *flags, "-print-file-name=libc_nano.a"], capture_output=True,
                          text=True).stdout.strip()
    if not Path(libc).is_absolute() or not Path(libc).is_file():
        raise PipelineError(f"newlib for arm-none-eabi not found: {INSTALL}")

    def first_line(*cmd):
        return subprocess.run(list(cmd), capture_output=True, text=True).stdout.splitlines()[0].strip()

    return {"gcc": first_line("arm-none-eabi-gcc", "--version"),
            "qemu": first_line("qemu-system-arm", "--version")}


# ---- the program -------------------------------------------------------------------------------

def _op_calls(include: Path, ops: list[str]) -> list[str]:
    """MicroMutableOpResolver.Add... calls for the firmware's ops that the library provides."""
    header = (include / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    available = {name.lower(): name for name in re.findall(r"TfLiteStatus Add(\w+)\(", header)}
    calls = []
    for op in ops:
        key = op.replace("_", "").lower()
        if op not in NOT_IN_LIBRARY and key in available and available[key] not in calls:
            calls.append(available[key])
    return calls


def _c_array(data: bytes, ctype: str, name: str) -> str:
    values = np.frombuffer(data, dtype=np.int8 if ctype == "int8_t" else np.uint8)
    rows = [",".join(map(str, values[i:i + 32])) for i in range(0, len(values), 32)]
    return f"alignas(16) const {ctype} {name}[] = {{\n" + ",\n".join(rows) + "\n};\n"


def _write_data(build: Path, include: Path, model: bytes, inputs: np.ndarray, ops: list[str]) -> None:
    calls = _op_calls(include, ops)
    frame_bytes = int(np.prod(inputs.shape[1:]))
    (build / "harness_data.h").write_text(
        "#pragma once\n#include <stdint.h>\n"
        "extern const uint8_t g_model[];\nextern const int8_t g_inputs[];\n"
        f"constexpr int g_input_count = {len(inputs)};\nconstexpr int g_input_bytes = {frame_bytes};\n"
        f"constexpr unsigned kFirmwareOpCount = {len(calls)};\n"
        "template <typename R> void register_firmware_ops(R& r) {\n"
        + "".join(f"  r.Add{c}();\n" for c in calls) + "}\n")
    (build / "harness_data.cc").write_text(
        '#include "harness_data.h"\n' + _c_array(model, "uint8_t", "g_model")
        + _c_array(np.ascontiguousarray(inputs, dtype=np.int8).tobytes(), "int8_t", "g_inputs"))


def _run(cmd: list[str], what: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"{what} failed: {last[:300]}")
    return result


def build_program(lib: Library, logs: bool, model: bytes, inputs: np.ndarray, ops: list[str], work: Path) -> Path:
    """Compile and link the harness with the model, the frames and one library; returns the ELF."""
    toolchain()
    archive = lib.archive(logs)
    build = work / f"{lib.commit}{'-logs' if logs else ''}"
    build.mkdir(parents=True, exist_ok=True)
    _write_data(build, lib.include, model, inputs, ops)
    includes = [f"-I{lib.include}", f"-I{lib.include}/third_party/flatbuffers/include",
                f"-I{lib.include}/third_party/gemmlowp", f"-I{build}"]
    cxx = ["arm-none-eabi-g++", *CPU_FLAGS, "-O2", "-std=c++17", "-fno-exceptions", "-fno-rtti",
           "-fno-threadsafe-statics", "-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY"]
    if not logs:
        cxx.append("-DTF_LITE_STRIP_ERROR_STRINGS")  # as the release library itself was built
    objects = []
    for source, compiler in ((HERE / "harness.cc", cxx + includes), (build / "harness_data.cc", cxx + includes),
                             (HERE / "startup.c", ["arm-none-eabi-gcc", *CPU_FLAGS, "-O2"])):
        obj = build / (source.stem + ".o")
        _run([*compiler, "-c", str(source), "-o", str(obj)], f"compiling {source.name} for libtflm {lib.commit}")
        objects.append(str(obj))
    elf = build / "harness.elf"
    _run(["arm-none-eabi-g++", *CPU_FLAGS, "--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles",
          "-Wl,--gc-sections", "-T", str(HERE / "mps2_an500.ld"), *objects, str(archive), "-lm", "-o", str(elf)],
         f"linking the harness with libtflm {lib.commit}")
    return elf


# ---- running it ----------------------------------------------------------------------------------

@dataclass
class Run:
    ok: bool
    messages: list[str] = field(default_factory=list)   # what the library printed
    error: str = ""                                     # "allocate 1", "invoke 1", ...
    arena_used: int | None = None
    arena: int | None = None                            # smallest arena that prepares and runs it
    outputs: list[list[int]] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)      # per frame, whole invoke
    ops: list[tuple[str, int]] = field(default_factory=list)   # (op, ticks) of the first frame

    def instructions(self) -> int:
        return self.ticks[0] * INSTRUCTIONS_PER_TICK

    def reason(self) -> str:
        said = [m for m in self.messages if m]
        return "; ".join(said) if said else f"{self.error} failed (this build of the library prints no reason)"


def run_program(elf: Path) -> Run:
    result = subprocess.run([*QEMU, "-kernel", str(elf)], capture_output=True, text=True, timeout=600)
    run = Run(ok=result.returncode == 0)
    for line in (result.stderr + result.stdout).splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "LOG":
            if rest.strip():
                run.messages.append(rest.strip())
        elif kind == "ERROR":
            run.error = rest.strip()
        elif kind == "ALLOCATED":
            run.arena_used = int(rest.split("=")[1])
        elif kind == "FRAME":
            fields = dict(part.split("=") for part in rest.split()[1:])
            run.ticks.append(int(fields["ticks"]))
            run.outputs.append([int(v) for v in fields["out"].split(",")])
        elif kind == "OP":
            _index, name, ticks = rest.split()
            run.ops.append((name, int(ticks.split("=")[1])))
        elif kind == "ARENA":
            run.arena = int(rest.split("=")[1])
    if run.ok and (run.arena is None or not run.outputs):
        raise PipelineError(f"{elf}: the harness ended without its report (exit {result.returncode})")
    if not run.ok and not run.error:
        run.error = f"exit {result.returncode}" + (" (a fault)" if "FAULT" in result.stderr else "")
    return run


def check(lib: Library, model: bytes, inputs: np.ndarray, ops: list[str], per_op: bool = True) -> Run:
    """Build and run the model with one library. The release library is what the firmware links;
    the one with logs (where there is one) says why a model fails and times each op."""
    with tempfile.TemporaryDirectory(prefix=f"harness-{lib.commit}-") as tmp:
        work = Path(tmp)
        run = run_program(build_program(lib, False, model, inputs, ops, work))
        if lib.archive(logs=True) is not None and (per_op or not run.ok):
            logged = run_program(build_program(lib, True, model, inputs, ops, work))
            if run.ok:
                run.ops = logged.ops
            else:
                run.messages = logged.messages or run.messages
    return run


# ---- a model of the old converter, for timing ---------------------------------------------------

def int8_for_timing(model: bytes) -> bytes:
    """A uint8 model (the 2020 converter's) with every uint8 tensor rewritten as int8 (zero point
    - 128, values XOR 0x80): the same arithmetic through the int8 kernels today's TFLite Micro
    has, so its instructions can be counted. Its outputs mean nothing."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    uint8, int8 = schema.TensorType.UINT8, schema.TensorType.INT8
    done = set()
    for sub in m.subgraphs:
        for t in sub.tensors:
            if t.type != uint8:
                continue
            t.type = int8
            if t.quantization is not None and t.quantization.zeroPoint is not None:
                t.quantization.zeroPoint = [int(z) - 128 for z in t.quantization.zeroPoint]
            buf = m.buffers[t.buffer]
            if t.buffer not in done and buf.data is not None and len(buf.data):
                buf.data = (np.asarray(buf.data, dtype=np.uint8) ^ 0x80).astype(np.uint8)
                done.add(t.buffer)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

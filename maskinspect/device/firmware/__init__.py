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

from maskinspect.errors import PipelineError

HERE = Path(__file__).parent
SOURCES = ("harness.cc", "startup.c", "mps2_an500.ld")
CPU_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]
QEMU = ["qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-nographic", "-monitor", "none",
        "-serial", "none", "-semihosting-config", "enable=on,target=native",
        "-icount", "shift=0,align=off,sleep=off"]
INSTRUCTIONS_PER_TICK = 40  # 1 ns per instruction, a 25 MHz timer
PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
INSTALL = f"install Debian's {', '.join(PACKAGES.split())} (apt-get install {PACKAGES})"
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


def claims_by_library(claims: list[dict]) -> dict[str, list[str]]:
    """firmware.claims grouped by the libtflm commit each firmware links: commit -> versions, in
    the order claimed (one build and run per library serves every firmware that links it)."""
    by_commit: dict[str, list[str]] = {}
    for claim in claims:
        by_commit.setdefault(claim["libtflm"], []).append(claim["firmware"])
    return by_commit


def library(folder: Path, commit: str, shown: str | None = None) -> Library:
    lib = Library(commit, folder)
    if lib.archive() is None or not lib.include.is_dir():
        raise PipelineError(f"{shown or lib.folder}: no OpenMV TFLite Micro library here (expected lib/"
                            f"libtflm-cortex-m7+fp-release.a and include/; OpenMV's libtflm at commit {commit})")
    return lib


def pinned_libraries(pin_files: list[Path], by_commit: dict[str, list[str]]) -> dict[str, Library]:
    """The library of each claimed commit, from its pin (pins/openmv-libtflm-<commit>.yaml): fetched
    and checked against the pin's sha256s."""
    from maskinspect.workflow import pinned

    by_pin = {}
    for path in pin_files:
        pin = pinned.read(path)
        by_pin[pin.commit] = (pin, path)
    libs = {}
    for commit in by_commit:
        found = [full for full in by_pin if full.startswith(commit)]
        if not found:
            raise PipelineError(f"firmware.claims: libtflm {commit}: no pin among {', '.join(map(str, pin_files))} "
                                f"(pin it with scripts/pin_inputs.py)")
        pin, path = by_pin[found[0]]
        libs[commit] = library(pinned.materialise(pin), commit, shown=str(path))
    return libs


@functools.lru_cache(maxsize=1)
def toolchain() -> dict[str, str]:
    """The cross compiler, its C library and QEMU, with their versions; one line when missing."""
    for tool in ("arm-none-eabi-g++", "arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            raise PipelineError(f"{tool} not found: {INSTALL}")
    for library, what in (("libc_nano.a", "newlib"), ("libstdc++_nano.a", "libstdc++")):
        found = subprocess.run(["arm-none-eabi-g++", *CPU_FLAGS, f"-print-file-name={library}"], capture_output=True,
                               text=True).stdout.strip()
        if not Path(found).is_absolute() or not Path(found).is_file():
            raise PipelineError(f"{what} for arm-none-eabi not found: {INSTALL}")

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
    return f"alignas(16) extern const {ctype} {name}[] = {{\n" + ",\n".join(rows) + "\n};\n"


def _run(cmd: list[str], what: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"{what} failed: {last[:300]}")
    return result


class Builder:
    """Builds harness programs in one folder. The harness and start-up objects depend on the
    library (and whether it logs), not on the model: each is compiled once, in parallel, and
    linked with every model's data."""

    def __init__(self, work: Path, ops: list[str]):
        self.work, self.ops = work, ops
        self.objects: dict[tuple[str, bool], list[Path]] = {}
        self.programs = 0

    def _compile_commands(self, lib: Library, logs: bool) -> tuple[Path, list[tuple[list[str], str]]]:
        build = self.work / f"{lib.commit}{'-logs' if logs else ''}"
        build.mkdir(parents=True, exist_ok=True)
        calls = _op_calls(lib.include, self.ops)
        (build / "firmware_ops.h").write_text(
            "#pragma once\n"
            f"constexpr unsigned kFirmwareOpCount = {len(calls)};\n"
            "template <typename R> void register_firmware_ops(R& r) {\n"
            + "".join(f"  r.Add{c}();\n" for c in calls) + "}\n")
        cxx = self.cxx(lib, logs, build)
        return build, [([*cxx, "-c", str(HERE / "harness.cc"), "-o", str(build / "harness.o")], "harness.cc"),
                       (["arm-none-eabi-gcc", *CPU_FLAGS, "-O2", "-c", str(HERE / "startup.c"), "-o",
                         str(build / "startup.o")], "startup.c")]

    @staticmethod
    def cxx(lib: Library, logs: bool, build: Path) -> list[str]:
        flags = ["arm-none-eabi-g++", *CPU_FLAGS, "-O2", "-std=c++17", "-fno-exceptions", "-fno-rtti",
                 "-fno-threadsafe-statics", "-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY",
                 f"-I{lib.include}", f"-I{lib.include}/third_party/flatbuffers/include",
                 f"-I{lib.include}/third_party/gemmlowp", f"-I{build}"]
        if not logs:
            flags.append("-DTF_LITE_STRIP_ERROR_STRINGS")  # as the release library itself was built
        return flags

    def prepare(self, wanted: list[tuple[Library, bool]]) -> None:
        """Compile the objects of these (library, logs) pairs that are not compiled yet, in parallel."""
        toolchain()
        jobs = []
        for lib, logs in wanted:
            if (lib.commit, logs) in self.objects:
                continue
            build, commands = self._compile_commands(lib, logs)
            self.objects[(lib.commit, logs)] = [build / "harness.o", build / "startup.o"]
            jobs += [(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
                      f"compiling {name} for libtflm {lib.commit}") for cmd, name in commands]
        for proc, what in jobs:
            _out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise PipelineError(f"{what} failed: {(err.strip().splitlines() or ['no message'])[-1][:300]}")

    def program(self, lib: Library, logs: bool, model: bytes, inputs: np.ndarray) -> Path:
        """The harness linked with one library, the model and the frames; returns the ELF."""
        self.prepare([(lib, logs)])
        self.programs += 1
        build = self.work / f"{lib.commit}{'-logs' if logs else ''}"
        data = build / f"data-{self.programs}.cc"
        frame_bytes = int(np.prod(inputs.shape[1:]))
        data.write_text("#include <stdint.h>\n" + _c_array(model, "uint8_t", "g_model")
                        + _c_array(np.ascontiguousarray(inputs, dtype=np.int8).tobytes(), "int8_t", "g_inputs")
                        + f"extern const int g_input_count = {len(inputs)};\n"
                        + f"extern const int g_input_bytes = {frame_bytes};\n")
        _run([*self.cxx(lib, logs, build), "-c", str(data), "-o", str(data.with_suffix(".o"))],
             f"compiling the model for libtflm {lib.commit}")
        elf = data.with_suffix(".elf")
        _run(["arm-none-eabi-g++", *CPU_FLAGS, "--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles",
              "-Wl,--gc-sections", "-T", str(HERE / "mps2_an500.ld"), *map(str, self.objects[(lib.commit, logs)]),
              str(data.with_suffix(".o")), str(lib.archive(logs)), "-lm", "-o", str(elf)],
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


def check(builder: Builder, lib: Library, model: bytes, inputs: np.ndarray, per_op: bool = True) -> Run:
    """Build and run the model with one library. The release library is what the firmware links;
    the one with logs (where there is one) says why a model fails and times each op."""
    logged = lib.archive(logs=True) is not None
    builder.prepare([(lib, False)] + ([(lib, True)] if logged and per_op else []))
    run = run_program(builder.program(lib, False, model, inputs))
    if logged and (per_op or not run.ok):
        with_logs = run_program(builder.program(lib, True, model, inputs))
        if run.ok:
            run.ops = with_logs.ops
        else:
            run.messages = with_logs.messages or run.messages
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

"""A bundle's main.py run as untrusted code: in a child process of its own, in a throwaway folder,
with no network, writing nowhere but that folder, for a limited time, with only the camera's API
to import. `maskinspect emulate` runs every bundle this way (docs/security.md).

What holds, layer by layer (the child says which held, and the parent prints it):
- its own process and session: killed whole at the time limit; CPU, memory, file size and open
  files bounded by rlimits; an empty environment (no credentials in reach);
- no network: a network namespace of its own (root, or unprivileged user namespaces), and, with
  Landlock ABI 4 or later, every TCP bind and connect refused as well;
- files: Landlock (Linux 5.13 and later) lets it read and write beneath the throwaway folder and
  nothing else, run no program, and (ABI 6) signal or reach no process outside it;
- root gives up its rights: the child runs as `nobody`;
- the import statement in main.py reaches the emulated camera modules and a few harmless ones
  only, so a plain `import socket` fails with a clear message (Python itself cannot be walled in:
  the layers above are the wall).

Where the kernel offers no Landlock, or neither namespace can be made, that layer is missing and
the parent says so in one line; a bundle that is not this project's own runs only with --trust.

The child: `python -I -m maskinspect.device.emulator.sandbox FOLDER FIRMWARE`. FOLDER holds
`bundle/` (main.py, model.tflite, model.txt), `frames.npy`; it writes `result.json`.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from maskinspect.errors import PipelineError

NOBODY = 65534
ALLOWED_IMPORTS = frozenset({"sensor", "image", "ml", "pyb", "time", "gc", "math", "micropython", "array",
                             "struct", "ustruct", "uarray", "ucollections", "collections", "utime", "machine"})
LIMITS = {resource.RLIMIT_AS: 6 << 30, resource.RLIMIT_FSIZE: 64 << 20, resource.RLIMIT_NOFILE: 256,
          resource.RLIMIT_CORE: 0}

# Linux's Landlock interface (include/uapi/linux/landlock.h).
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
FS_EXECUTE = 1 << 0
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock."""
    abi = _libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(abi), 0)


def _fs_rights(abi: int) -> int:
    return FS_ALL_BY_ABI[max(k for k in FS_ALL_BY_ABI if k <= abi)]


def restrict_to(folder: Path) -> str:
    """Landlock: from now on this process reads and writes beneath `folder` only, runs nothing, and
    (ABI 4+) binds and connects no TCP socket, (ABI 6+) signals and reaches no process outside.
    Returns what held, in words."""
    libc = _libc()
    abi = landlock_abi()
    if abi < 1:
        return "files: not isolated (no Landlock in this kernel)"
    fs = _fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=fs,
                        handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
                        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"files: not isolated (Landlock refused the ruleset: {os.strerror(ctypes.get_errno())})"
    try:
        fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = _PathBeneath(allowed_access=fs & ~FS_EXECUTE, parent_fd=fd)
            if libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                return f"files: not isolated (Landlock rule: {os.strerror(ctypes.get_errno())})"
        finally:
            os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(SYS_RESTRICT_SELF, ruleset,
                                                                            ctypes.c_uint32(0)) < 0:
            return f"files: not isolated (Landlock: {os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    said = f"files beneath its folder only (Landlock ABI {abi})"
    if abi >= 4:
        said += ", TCP refused"
    if abi >= 6:
        said += ", no signals or abstract sockets outside"
    return said


def own_network() -> str:
    """A network namespace of its own (no interface but a loopback that is down)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) == 0:
        return "network: its own namespace, empty"
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        try:  # keep our own ids inside the user namespace
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        except OSError:
            pass
        return "network: its own namespace, empty (user namespace)"
    return f"network: not isolated by a namespace ({os.strerror(ctypes.get_errno())})"


def _drop_root(folder: Path) -> str:
    if os.geteuid() != 0:
        return ""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "runs as nobody"


def _guarded_builtins() -> dict:
    """main.py's builtins: Python's, with an import that reaches the camera's API only."""
    import builtins

    real_import = builtins.__import__

    def camera_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.split(".")[0] not in ALLOWED_IMPORTS:
            raise ImportError(f"import of {name!r} refused: main.py runs with the camera's API only "
                              f"({', '.join(sorted(ALLOWED_IMPORTS))})")
        return real_import(name, globals, locals, fromlist, level)

    guarded = dict(vars(builtins))
    guarded["__import__"] = camera_import
    return guarded


def child(work: Path, firmware: str, max_frames: int) -> int:
    """In the sandbox: isolate, then run main.py on the frames; the record goes to result.json
    (opened before the walls go up, so main.py's folder is all it can write)."""
    import importlib
    import signal

    isolation = [own_network()]                        # first, while the process has one thread
    for limit, value in LIMITS.items():
        resource.setrlimit(limit, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the size limit fails, not the process
    from maskinspect.device.emulator import Emulator
    from maskinspect.device import runtime
    from maskinspect.model import tflite_graph

    bundle = work / "bundle"
    frames = np.load(work / "frames.npy")
    model = bundle / "model.tflite"
    runtime.smallest_arena(runtime.read_model(model))  # everything the camera's API loads, loaded now
    tflite_graph.read(model)
    for name in ("runpy", "pkgutil", *sorted(ALLOWED_IMPORTS - set(Emulator.MODULES))):
        try:
            importlib.import_module(name)              # what running main.py imports, and the harmless modules it may
        except ImportError:
            pass
    emulator = Emulator(_Progress(frames), max_frames=max_frames, firmware=firmware)
    out = open(work / "result.json", "w")  # noqa: SIM115 - written at the end, after the walls
    dropped = _drop_root(bundle)
    isolation.append(restrict_to(bundle))
    if dropped:
        isolation.append(dropped)
    result = {"isolation": isolation}
    try:
        run = emulator.run(bundle / "main.py", builtins=_guarded_builtins())
        result.update(lines=run.lines, frames=run.frames, led_states=[{str(k): v for k, v in s.items()}
                                                                       for s in run.led_states])
    except BaseException as exc:  # noqa: BLE001 - whatever main.py raised is its answer
        first = (str(exc).strip().splitlines() or [""])[0]
        result["error"] = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    with out:
        json.dump(result, out)
    return 0


class _Progress:
    """The frames; each one the emulated sensor takes is reported on stdout (a progress bar)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        os.write(1, b".")
        return self.frames[i]


BUNDLE_FILES = ("main.py", "model.tflite", "model.txt")


def run(folder: Path, frames: np.ndarray, firmware: str, timeout_s: float, on_progress=None) -> dict:
    """Run the bundle in `folder` (main.py, model.tflite, model.txt) in the sandbox; returns the
    child's record (lines, frames, led_states, isolation), or raises one line."""
    with tempfile.TemporaryDirectory(prefix="maskinspect-sandbox-") as tmp:
        work = Path(tmp)
        (work / "bundle").mkdir()
        for name in BUNDLE_FILES:
            shutil.copyfile(folder / name, work / "bundle" / name)
        np.save(work / "frames.npy", frames, allow_pickle=False)
        if os.geteuid() == 0:  # the child gives up root: its folder must be its own
            for path in [work, *work.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
        # An empty environment but for a single thread (a user namespace needs one) and fixed hashing.
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "TMPDIR": str(work / "bundle")}
        proc = subprocess.Popen([sys.executable, "-I", "-m", "maskinspect.device.emulator.sandbox", str(work),
                                 firmware, str(len(frames))], cwd=work / "bundle", env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        import threading
        import time

        errors: list[bytes] = []
        threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        done = 0
        try:
            while True:
                chunk = _read_some(proc.stdout, max(0.0, deadline - time.monotonic()))
                if chunk is None:
                    raise PipelineError(f"main.py ran past the {timeout_s:g} s limit and was stopped")
                if not chunk:
                    break
                if on_progress:
                    for _ in range(chunk.count(b".")):
                        on_progress(done)
                        done += 1
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise PipelineError(f"main.py ran past the {timeout_s:g} s limit and was stopped") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        result_file = work / "result.json"
        if not result_file.exists():
            said = b"".join(errors).decode(errors="replace").strip().splitlines()
            raise PipelineError(f"the sandbox ended without a result (exit {proc.returncode}"
                                f"{': ' + said[-1][:200] if said else ''})")
        return json.loads(result_file.read_text())


def _read_some(stream, timeout: float) -> bytes | None:
    """Up to 4 kB from the child's stdout: b"" at its end, None when nothing came in time."""
    import select

    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    return os.read(stream.fileno(), 4096)


if __name__ == "__main__":
    sys.exit(child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))

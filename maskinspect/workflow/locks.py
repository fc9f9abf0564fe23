"""One build at a time in a checkout, whichever front end starts it.

Two locks (flock(2): the kernel drops them when their holder dies, even by SIGKILL, so a lock
is never stale), in Snakemake's state folder:

- build.lock: held exclusively by a running Snakemake build (its main process);
- stage.lock: held, shared, by every stage script while it runs, under either front end.

A Snakemake build starts only when neither is held and no `dvc` command runs (one holds DVC's own
lock, .dvc/tmp/lock, or, while it runs a stage's command, lists the stage in .dvc/tmp/rwlock); a
stage script started by anything but the running Snakemake build (a
`dvc repro` beside it) refuses to run. Each refusal is one line naming who holds the checkout.
Snakemake's own lock files (.snakemake/locks) are left behind when a build is killed; with no
build holding build.lock they are known to be stale, and a new build removes them.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from maskinspect.errors import PipelineError

FOLDER = ".snakemake/maskinspect"
BUILD_LOCK = f"{FOLDER}/build.lock"
STAGE_LOCK = f"{FOLDER}/stage.lock"
DVC_LOCK = ".dvc/tmp/lock"
DVC_RWLOCK = ".dvc/tmp/rwlock"  # DVC's record of the stages it is running (it unlocks DVC_LOCK meanwhile)
SNAKEMAKE_LOCKS = ".snakemake/locks"
BUILD_ENV = "MASKINSPECT_BUILD"   # set by a Snakemake build for its jobs: the build's pid


def holders(path: Path) -> list[int]:
    """Pids holding a lock on `path` (from /proc/locks; empty where that is not available)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        if "->" in fields:
            continue  # a waiter, not a holder
        if len(fields) >= 6 and fields[5] == want and fields[4].lstrip("-").isdigit():
            pids.append(int(fields[4]))
    return sorted(set(p for p in pids if p > 0))


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid}: {cmd[:100]}" if cmd else f"pid {pid}"


def _open(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+")  # never truncates: another holder's note stays readable


def _try(f, mode: int) -> bool:
    try:
        fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _held_by_others(path: Path, mode: int = fcntl.LOCK_EX) -> bool:
    """True when someone holds a lock on `path` that conflicts with `mode` (probes, then releases)."""
    if not path.exists():
        return False
    with open(path, "a+") as f:
        if _try(f, mode):
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False
        return True


def dvc_running(root: Path) -> str | None:
    """Who is running a dvc command in this checkout, if anyone."""
    if _held_by_others(root / DVC_LOCK):
        return ", ".join(describe(p) for p in holders(root / DVC_LOCK)) or "a dvc command"
    try:
        record = json.loads((root / DVC_RWLOCK).read_text() or "{}")
    except (OSError, ValueError):
        return None
    infos = [*record.get("write", {}).values(), *(i for infos in record.get("read", {}).values() for i in infos)]
    for info in infos:
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and Path(f"/proc/{pid}").exists():
            return f"pid {pid}: {info.get('cmd', 'dvc')[:100]}"
    return None


class BuildLock:
    """Taken by a Snakemake build for its whole run (kept open; the kernel releases it at exit)."""

    def __init__(self, root: Path):
        self.root = root
        self.file = None

    def acquire(self, command: str) -> list[str]:
        """Take the checkout for this build, or raise one line saying who has it. Returns notes
        (one line each) about what was cleaned up."""
        root = self.root
        who = dvc_running(root)
        if who:
            raise PipelineError(f"a DVC command is running in this checkout ({who}); wait for it to finish")
        f = _open(root / BUILD_LOCK)
        if not _try(f, fcntl.LOCK_EX):
            f.seek(0)
            note = f.read().strip()
            f.close()
            try:
                info = json.loads(note)
                who = f"pid {info['pid']}, started {info['started']}"
            except (ValueError, KeyError, TypeError):
                who = ", ".join(describe(p) for p in holders(root / BUILD_LOCK)) or "another process"
            raise PipelineError(f"another Snakemake build is running in this checkout ({who}); "
                                f"wait for it to finish")
        if _held_by_others(root / STAGE_LOCK):
            f.close()
            who = "; ".join(describe(p) for p in holders(root / STAGE_LOCK)) or "a stage"
            raise PipelineError(f"a stage is still running in this checkout ({who}), from an earlier or "
                                f"another build; wait for it to finish or stop it")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "command": command}) + "\n")
        f.flush()
        self.file = f
        os.environ[BUILD_ENV] = str(os.getpid())
        notes = []
        stale = sorted((root / SNAKEMAKE_LOCKS).glob("*.lock")) if (root / SNAKEMAKE_LOCKS).is_dir() else []
        if stale:
            for p in stale:
                p.unlink()
            notes.append(f"removed the lock an interrupted build left ({SNAKEMAKE_LOCKS}: no build holds this "
                         f"checkout, so it was stale)")
        return notes


class StageLock:
    """Held (shared) by a stage script while it runs in a checkout."""

    def __init__(self, root: Path, stage: str):
        self.root = root
        self.stage = stage
        self.file = None

    def __enter__(self):
        root = self.root
        ours = os.environ.get(BUILD_ENV)
        if _held_by_others(root / BUILD_LOCK, fcntl.LOCK_SH):
            pids = holders(root / BUILD_LOCK)
            if not ours or (pids and int(ours) not in pids):
                who = ", ".join(describe(p) for p in pids) or "another process"
                raise PipelineError(f"a Snakemake build is running in this checkout ({who}); {self.stage} "
                                    f"was not run: wait for the build to finish")
        self.file = _open(root / STAGE_LOCK)
        deadline = time.monotonic() + 10  # a starting build holds it exclusively for an instant
        while not _try(self.file, fcntl.LOCK_SH):
            if time.monotonic() > deadline:
                self.file.close()
                raise PipelineError(f"{root / STAGE_LOCK}: cannot take the stage lock")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()
        return False

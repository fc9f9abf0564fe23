"""How long a build sits idle between one job's end and the next job's start: in an
uninterrupted build, and in each build resumed after the fault test's chain of interrupts
(Ctrl-C in pretrain, a kill in finetune, Ctrl-C in quantize, a kill in firmware_check).

    scripts/venv.sh python benchmarks/resume_gaps.py [--keep DIR]

On a tiny copy of the repository (the tests' tiny configuration), built once, then rebuilt from
pretrain on: once straight through, once through the chain. Each build's output is read as it
comes (a pipe nobody reads would stop the build itself), and the gaps are read from Snakemake's
own log (.snakemake/log/, one-second timestamps): for each job, its start minus the end of the
job before it. Prints one table row per build; exit 1 when any gap is 5 s or more.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_repo, init_git, tiny_params, venv_env, write_params  # noqa: E402

CHAIN = [("pretrain", signal.SIGINT), ("finetune", signal.SIGKILL), ("quantize", signal.SIGINT),
         ("firmware_check", signal.SIGKILL)]
CHANGED = {"pretrain.epochs": 3, "finetune.epochs": 6}
BOUND_S = 5
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def build(root: Path, stop_in: tuple[str, int] | None = None) -> Path:
    """One `snakemake --cores 2` in its own process group, its output drained; stopped with the
    signal once the stage runs, when asked. Returns the build's Snakemake log."""
    before = set((root / ".snakemake/log").glob("*.log")) if (root / ".snakemake/log").is_dir() else set()
    proc = subprocess.Popen(["snakemake", "--cores", "2"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=venv_env(), start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    if stop_in:
        stage, sig = stop_in
        wait_for(root, stage, proc)
        time.sleep(2)
        os.killpg(proc.pid, sig)
    proc.wait(timeout=1800)
    if stop_in is None and proc.returncode != 0:
        sys.exit(f"resume_gaps: the build failed:\n{b''.join(lines[-30:]).decode(errors='replace')}")
    (log,) = set((root / ".snakemake/log").glob("*.log")) - before
    return log


def wait_for(root: Path, stage: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for p in Path("/proc").iterdir():
            try:
                if (p.name.isdigit() and f"scripts/{stage}.py" in (p / "cmdline").read_bytes().decode(errors="replace")
                        and Path(os.readlink(p / "cwd")) == root):
                    return
            except OSError:
                continue
        time.sleep(0.1)
    sys.exit(f"resume_gaps: {stage} did not start")


def gaps(log: Path) -> list[tuple[str, float]]:
    """(job, seconds idle before it started) for every job after the build's first."""
    events, stamp = [], None
    for line in log.read_text().splitlines():
        m = STAMP.match(line.strip())
        if m:
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            continue
        started = re.match(r"^(?:local)?rule (\w+):", line)
        finished = re.match(r"^Finished jobid: \d+ \(Rule: (\w+)\)", line)
        if stamp and (started or finished):
            events.append(("start" if started else "end", (started or finished).group(1), stamp))
    out, last_end = [], None
    for kind, job, at in events:
        if kind == "end":
            last_end = at
        elif last_end is not None:
            out.append((job, (at - last_end).total_seconds()))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="maskinspect-gaps-"))
    source = copy_repo(work / "source")
    write_params(source / "params.yaml", tiny_params())
    subprocess.run([sys.executable, "scripts/sync_dvc.py"], cwd=source, check=True, capture_output=True, env=venv_env())
    init_git(source)
    build(source)  # built once: the rebuilds below start from pretrain
    rows = []
    for label in ("uninterrupted", "chain"):
        root = work / label
        shutil.copytree(source, root, symlinks=True)
        params = tiny_params(**{f"demo_recipe.{k}": v for k, v in CHANGED.items()})
        write_params(root / "params.yaml", params)
        if label == "uninterrupted":
            rows.append(("uninterrupted build", gaps(build(root))))
            continue
        for stage, sig in CHAIN:
            rows.append((f"resumed, then {signal.Signals(sig).name} in {stage}", gaps(build(root, (stage, sig)))))
        rows.append(("resumed to the end", gaps(build(root))))
    print("| build | jobs | largest gap s | at | every gap s |\n|---|---:|---:|---|---|")
    worst = 0.0
    for label, found in rows:
        top = max(found, key=lambda g: g[1], default=("—", 0.0))
        worst = max(worst, top[1])
        print(f"| {label} | {len(found) + 1} | {top[1]:.0f} | {top[0]} | {' '.join(f'{s:.0f}' for _j, s in found)} |")
    print(f"resume_gaps: the largest gap between jobs was {worst:.0f} s (bound {BOUND_S} s; timestamps to the second)",
          file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if worst < BOUND_S else 1


if __name__ == "__main__":
    sys.exit(main())

"""Pipeline timings on the demo data, in a fresh clone of this repository:

- the full build (`snakemake --cores all`) and the time of each stage;
- the no-op run of each front end (`snakemake`, `dvc status`, `dvc repro`);
- an incremental rebuild after a param only the last stage reads (bundle.board).

    scripts/venv.sh python benchmarks/pipeline.py [--keep DIR]

Prints a table (markdown). The clone is of HEAD: commit first what you want measured.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def timed(cwd: Path, *cmd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def stage_times(log: str) -> dict[str, float]:
    """Per rule, summed over its jobs, from Snakemake's log (job start and 'Finished' lines)."""
    stamp = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
    starts: dict[str, tuple[str, datetime]] = {}
    totals: dict[str, float] = {}
    current_time = None
    pending_rule = None
    for line in log.splitlines():
        m = stamp.match(line.strip())
        if m:
            current_time = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            pending_rule = m.group(1)
            continue
        m = re.match(r"^\s+jobid: (\d+)", line)
        if m and pending_rule and current_time:
            starts[m.group(1)] = (pending_rule, current_time)
            pending_rule = None
            continue
        m = re.search(r"Finished jobid: (\d+)", line)
        if m and m.group(1) in starts and current_time:
            rule, start = starts.pop(m.group(1))
            totals[rule] = totals.get(rule, 0.0) + (current_time - start).total_seconds()
    return totals


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="maskinspect-bench-"))
    clone = work / "clone"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    rows = []
    t_full, log = timed(clone, "snakemake", "--cores", "all")
    rows.append(("full build, snakemake --cores all", t_full))
    rows.append(("no-op: snakemake --cores all", timed(clone, "snakemake", "--cores", "all")[0]))
    rows.append(("no-op: dvc status", timed(clone, "dvc", "status")[0]))
    rows.append(("no-op: dvc repro", timed(clone, "dvc", "repro")[0]))
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["bundle"]["board"] = params["bundle"]["board"] + " (benchmark)"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows.append(("incremental: bundle.board changed, snakemake", timed(clone, "snakemake", "--cores", "all")[0]))
    params["bundle"]["board"] = params["bundle"]["board"] + " again"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows.append(("incremental: bundle.board changed, dvc repro", timed(clone, "dvc", "repro")[0]))

    logs = sorted((clone / ".snakemake" / "log").glob("*.snakemake.log"))
    per_stage = stage_times(logs[0].read_text()) if logs else {}
    print(f"\nPipeline on the demo data ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} "
          f"cores), clone of {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}\n")
    print("| what | seconds |\n|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} |")
    print("\n| stage (full build; frames summed over videos, which run in parallel) | seconds |\n|---|---:|")
    for rule, seconds in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        print(f"| {rule} | {seconds:.0f} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

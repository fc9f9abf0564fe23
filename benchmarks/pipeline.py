"""Pipeline timings on the demo data, in a fresh clone of this repository:

- the full build (`snakemake --cores all`), and each stage's wall time and peak memory from
  Snakemake's `benchmark:` files beside the cluster request it makes (stages.py);
- the no-op run of each front end (`snakemake`, `dvc status`, `dvc repro`);
- an incremental rebuild after a param only the last stage reads (bundle.board).

    scripts/venv.sh python benchmarks/pipeline.py [--keep DIR]

Prints a table (markdown). The clone is of HEAD: commit first what you want measured.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
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


def stage_benchmarks(clone: Path) -> dict[str, tuple[float, float, int]]:
    """Per rule, from Snakemake's `benchmark:` files (benchmarks/<rule>/<job>.tsv): wall seconds
    summed over its jobs, the largest peak resident memory (MB) of any job, and the job count."""
    import csv

    out: dict[str, tuple[float, float, int]] = {}
    for tsv in sorted((clone / "benchmarks").glob("*/*.tsv")):
        with tsv.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        seconds, rss = float(row["s"]), float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0
        total, peak, jobs = out.get(tsv.parent.name, (0.0, 0.0, 0))
        out[tsv.parent.name] = (total + seconds, max(peak, rss), jobs + 1)
    return out


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
    per_stage = stage_benchmarks(clone)  # before the incremental runs below write bundle's again
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

    print(f"\nPipeline on the demo data ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} "
          f"cores), clone of {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}\n")
    print("| what | seconds |\n|---|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} |")
    print("\n| stage (full build, from benchmark: files) | jobs | wall s (summed) | peak memory MB | cluster request "
          "MB / min |\n|---|---:|---:|---:|---|")
    from maskinspect.workflow.stages import MEASURED, requests

    for rule, (seconds, rss, jobs) in sorted(per_stage.items(), key=lambda kv: -kv[1][0]):
        res = requests(rule) if rule in MEASURED else {}
        print(f"| {rule} | {jobs} | {seconds:.1f} | {rss:.0f} | {res.get('mem_mb', '—')} / {res.get('runtime', '—')} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

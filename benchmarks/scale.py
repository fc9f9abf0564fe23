"""How each stage's cost grows with the footage: the demo built at 1x, 10x and 50x its frames
(4 videos of 30 s, 300 s and 1,500 s at 10 fps: 1,200, 12,000 and 60,000 frames), SimCLR for one
epoch, everything else as the demo has it.

    scripts/venv.sh python benchmarks/scale.py [--scales 1 10 50] [--keep DIR]

Each scale is a clean clone built by Snakemake; each stage's wall time, CPU time and peak resident
memory come from Snakemake's benchmark files (benchmarks/<stage>/, summed over a stage's jobs, the
peak the largest job's). Prints a markdown table with the growth exponent of each figure between
the smallest and the largest scale (1: linear in frames; 0: flat), and exits 1 when a stage grows
faster than linearly or needs more than 2 GB at the largest scale.
"""
from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BOUND_MB = 2048
# Stages whose work grows with the footage; the others work on a fixed labelled sample or a model
# and should stay flat. Every stage must grow at most linearly.
PER_FRAME = ("render_demo", "extract_frames", "pretrain", "embed", "select_frames", "annotate")


def build(work: Path, scale: int) -> dict[str, dict]:
    clone = work / f"x{scale}"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["demo"]["seconds"] = 30 * scale
    params["demo_recipe"]["pretrain"]["epochs"] = 1
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "rules"], cwd=clone,
                            capture_output=True, text=True, env={**__import__("os").environ,
                                                                 "MASKINSPECT_NO_DVC_COMMIT": "1"})
    if result.returncode != 0:
        sys.exit(f"scale: the x{scale} build failed:\n{result.stderr[-3000:]}")
    print(f"scale: x{scale} built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    stages: dict[str, dict] = {}
    for tsv in sorted((clone / "benchmarks").glob("*/*.tsv")):
        with tsv.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        figure = stages.setdefault(tsv.parent.name, {"wall": 0.0, "cpu": 0.0, "peak_mb": 0.0})
        figure["wall"] += float(row["s"])
        figure["cpu"] += float(row["cpu_time"]) if row.get("cpu_time") not in (None, "", "NA", "-") else 0.0
        rss = row.get("max_rss")
        figure["peak_mb"] = max(figure["peak_mb"], float(rss) if rss not in (None, "", "NA", "-") else 0.0)
    return stages


def exponent(small: float, large: float, ratio: float) -> float:
    """d log(cost) / d log(frames): 1 linear, 0 flat."""
    if small <= 0 or large <= 0:
        return float("nan")
    return math.log(large / small) / math.log(ratio)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="maskinspect-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = {scale: build(work, scale) for scale in args.scales}
    lo, hi = min(args.scales), max(args.scales)
    ratio = hi / lo
    head = " | ".join(f"x{s} wall s / cpu s / peak MB" for s in args.scales)
    print(f"| stage | works on | {head} | growth: wall / peak |\n|---|---|" + "---|" * len(args.scales) + "---|")
    failures = []
    for stage in figures[hi]:  # in the order Snakemake wrote them (by file name)
        cells = []
        for s in args.scales:
            f = figures[s].get(stage, {"wall": 0, "cpu": 0, "peak_mb": 0})
            cells.append(f"{f['wall']:.1f} / {f['cpu']:.1f} / {f['peak_mb']:.0f}")
        a, b = figures[lo].get(stage), figures[hi][stage]
        wall_exp = exponent(a["wall"], b["wall"], ratio) if a else float("nan")
        mem_exp = exponent(a["peak_mb"], b["peak_mb"], ratio) if a else float("nan")
        kind = "the frames" if stage in PER_FRAME else "a fixed sample"
        print(f"| {stage} | {kind} | {' | '.join(cells)} | {wall_exp:.2f} / {mem_exp:.2f} |")
        if wall_exp > 1.15:  # beyond linear, with room for fixed costs and noise
            failures.append(f"{stage} grows as frames^{wall_exp:.2f}")
        if b["peak_mb"] > MEMORY_BOUND_MB:
            failures.append(f"{stage} needs {b['peak_mb']:.0f} MB at x{hi}")
    for failure in failures:
        print(f"scale: {failure}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

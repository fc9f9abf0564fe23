"""Bit-for-bit reproducibility: two clean clones of HEAD, one built by Snakemake and one by
`dvc repro`, every artifact's sha256 compared with the other build and with the
committed dvc.lock.

    scripts/venv.sh python benchmarks/reproducibility.py [--keep DIR]

Prints the artifact table with match / differ (markdown); exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def build(clone: Path, *cmd: str) -> float:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    t0 = time.perf_counter()
    result = subprocess.run(list(cmd), cwd=clone, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"reproducibility: {' '.join(cmd)} failed in {clone}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - t0


def md5_by_path(lock: dict) -> dict[str, str]:
    return {o["path"]: o["md5"] for st in lock.get("stages", {}).values() for o in st.get("outs", [])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="maskinspect-repro-"))
    for name in ("snakemake", "dvc"):
        shutil.rmtree(work / name, ignore_errors=True)
    t_snake = build(work / "snakemake", "snakemake", "--cores", "all")
    t_dvc = build(work / "dvc", "dvc", "repro", "--no-run-cache")
    committed = md5_by_path(yaml.safe_load((ROOT / "dvc.lock").read_text()) or {}) if (ROOT / "dvc.lock").exists() else {}
    paths = sorted(md5_by_path(yaml.safe_load((work / "dvc" / "dvc.lock").read_text())))
    differ = 0
    print(f"\nTwo clean clones of {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}: "
          f"Snakemake build {t_snake:.0f} s, DVC build {t_dvc:.0f} s\n")
    print("| artifact | sha256 (Snakemake build) | Snakemake vs DVC | vs committed dvc.lock |\n|---|---|---|---|")
    for rel in paths:
        a = (work / "snakemake" / rel).read_bytes()
        b = (work / "dvc" / rel).read_bytes()
        same = a == b
        lock = committed.get(rel)
        vs_lock = "-" if lock is None else ("match" if hashlib.md5(b).hexdigest() == lock else "DIFFER")
        differ += (not same) + (vs_lock == "DIFFER")
        print(f"| {rel} | {hashlib.sha256(a).hexdigest()[:16]}… | {'match' if same else 'DIFFER'} | {vs_lock} |")
    print(f"\n{len(paths)} artifacts, {differ} difference(s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

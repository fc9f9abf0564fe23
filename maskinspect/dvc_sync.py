"""Keeping Snakemake's view (file times) and DVC's view (content hashes in dvc.lock) of the
same graph in agreement.

- Before Snakemake plans: `dvc pull`, `dvc checkout` and `git checkout` give every file a
  fresh time in no particular order, and Snakemake, which compares times, would rebuild
  everything. For each stage whose inputs and outputs still hold exactly the bytes (and
  whose command and params are those) recorded in dvc.lock, the outputs get a time just
  after their newest input, stage by stage in graph order. Nothing is touched when the
  times are already in order, and a stage that differs from dvc.lock is left alone for
  Snakemake to rebuild.
- After Snakemake built something: the stages that ran are recorded with `dvc commit`, so
  `dvc status` agrees that everything is up to date, and `dvc push` can share the results.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import params as params_mod
from .pipeline import Stage, expand, instances, settings_file

STEP_NS = 1_000_000  # outputs are made 1 ms newer than their newest input


def _paths(st: Stage, key: str | None, paths: list[str]) -> list[str]:
    return [expand(st, p, key) if key else p for p in paths]


def md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_lock(root: Path) -> dict:
    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    try:
        return (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}


def _matches(root: Path, entries: list[dict]) -> bool:
    for e in entries:
        p = root / e["path"]
        if not p.is_file() or p.stat().st_size != e.get("size", -1) or md5(p) != e.get("md5"):
            return False
    return True


def restore_mtimes(root: Path, stages: list[Stage], params: dict) -> list[str]:
    """Put output times back in graph order for stages whose bytes, command and params are
    those of dvc.lock; returns their names. Nothing is read twice when times are in order."""
    lock = _read_lock(root)
    fixed = []
    for name, st, key in instances(stages):
        entry = lock.get(name)
        if not entry:
            continue
        outs = [root / p for p in _paths(st, key, st.out_paths())]
        deps = [root / p for p in st.code(root) + _paths(st, key, st.dep_paths()) + [settings_file(name)]]
        if not all(p.is_file() for p in outs) or not all(p.exists() for p in deps):
            continue
        newest_dep = max(p.stat().st_mtime_ns for p in deps)
        if min(p.stat().st_mtime_ns for p in outs) > newest_dep:
            continue  # already in order
        cmd = expand(st, st.cmd, key) if key else st.cmd
        current = {k: params_mod.get(params, k) for k in st.params}
        if entry.get("cmd") != cmd or entry.get("params", {}).get("params.yaml", {}) != current:
            continue  # DVC would rerun it too
        if not _matches(root, entry.get("deps", [])) or not _matches(root, entry.get("outs", [])):
            continue  # the bytes differ: a real change, Snakemake rebuilds it
        stamp = newest_dep + STEP_NS
        for p in outs:
            os.utime(p, ns=(stamp, stamp))
        fixed.append(name)
    return fixed


def output_times(root: Path, stages: list[Stage]) -> dict[str, tuple[str, int | None]]:
    """path -> (DVC stage name, mtime or None)."""
    times = {}
    for name, st, key in instances(stages):
        for rel in _paths(st, key, st.out_paths()):
            p = root / rel
            times[rel] = (name, p.stat().st_mtime_ns if p.exists() else None)
    return times


def commit_changed(root: Path, stages: list[Stage], before: dict[str, tuple[str, int | None]]) -> list[str]:
    """`dvc commit` the stages whose outputs Snakemake rewrote; returns their names."""
    after = output_times(root, stages)
    changed = sorted({name for path, (name, t) in after.items() if t is not None and before.get(path, (name, None))[1] != t})
    if not changed or not (root / ".dvc").is_dir() or os.environ.get("MASKINSPECT_NO_DVC_COMMIT"):
        return []
    dvc = shutil.which("dvc")
    if dvc is None:
        print("Snakefile: note: dvc not found; dvc.lock not updated", file=sys.stderr)
        return []
    result = subprocess.run([dvc, "commit", "--force", "--quiet", *changed], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"Snakefile: warning: dvc commit failed, dvc.lock not updated: "
              f"{(result.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return []
    return changed

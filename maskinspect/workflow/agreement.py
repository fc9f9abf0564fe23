"""Keeping Snakemake's view (file times) and DVC's view (content hashes in dvc.lock) of one graph
in agreement. Everything the two front ends need from each other is here:

- Before a Snakemake build plans: `dvc pull`, `dvc checkout` and `git checkout` give files fresh
  times in no particular order, and Snakemake, which compares times, would rebuild everything.
  When some stage's outputs are older than its inputs, `dvc status` says which stages hold the
  bytes, command and params that dvc.lock records; those get output times just after their
  newest input, stage by stage in graph order. Nothing is read or touched when times are in order.
- After a Snakemake build: every stage that `dvc status` finds changed but whose outputs are
  all newer than its inputs (up to date to Snakemake: built by this build or by an earlier one
  that was stopped before it could record them) is recorded with `dvc commit`, so `dvc status`
  agrees and `dvc push` shares the results. A stage an input of which changed while the build
  ran is left out: it is stale, and both front ends say so. MASKINSPECT_NO_DVC_COMMIT=1 turns
  this off (a checkout without DVC needs nothing: it is skipped there).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from maskinspect.workflow.declare import Graph, folder_files
from maskinspect.workflow.settings import path as settings_path

STEP_NS = 1_000_000  # outputs are made 1 ms newer than their newest input


def _files(root: Path, paths: list[str]) -> list[Path]:
    """Paths as files: a folder stands for the files in it."""
    out = []
    for p in paths:
        full = root / p
        out.extend(root / f for f in folder_files(root, p)) if full.is_dir() else out.append(full)
    return out


def _instance_files(root: Path, graph: Graph, r, item) -> tuple[list[Path], list[Path]]:
    deps = [r.expand(d, item) for d in r.deps(graph.produced)]
    deps_files = _files(root, [*graph.code(r), *deps, settings_path(r.instance_name(item))])
    outs = [root / r.expand(o, item) for o in r.outs()]
    return deps_files, outs


def _timed_outputs(root: Path, r, item, outs: list[Path]) -> list[Path]:
    """The outputs whose times Snakemake compares with the inputs: its benchmark file too."""
    benchmark = root / r.stage.benchmark(item)
    return outs + [benchmark] if benchmark.exists() else outs


def out_of_order(root: Path, graph: Graph) -> list[str]:
    """Stage instances whose outputs all exist but are not all newer than every input."""
    found = []
    for name, r, item in graph.instances():
        deps, outs = _instance_files(root, graph, r, item)
        if not outs or not all(p.is_file() for p in outs) or not all(p.exists() for p in deps):
            continue
        outs = _timed_outputs(root, r, item, outs)
        if min(p.stat().st_mtime_ns for p in outs) <= max(p.stat().st_mtime_ns for p in deps):
            found.append(name)
    return found


def dvc_changed(root: Path) -> set[str] | None:
    """Stage instances `dvc status` reports as changed; None when DVC cannot say."""
    dvc = shutil.which("dvc")
    if dvc is None or not (root / ".dvc").is_dir() or not (root / "dvc.lock").exists():
        return None
    result = subprocess.run([dvc, "status", "--json"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    try:
        return set(json.loads(result.stdout or "{}"))
    except ValueError:
        return None


def restore_times(root: Path, graph: Graph) -> list[str]:
    """Put output times back in graph order for stages DVC finds up to date; returns their names."""
    if not out_of_order(root, graph):
        return []
    changed = dvc_changed(root)
    if changed is None:
        return []
    fixed = []
    for name, r, item in graph.instances():  # graph order: a stage's inputs are settled first
        if name in changed:
            continue
        deps, outs = _instance_files(root, graph, r, item)
        if not outs or not all(p.is_file() for p in outs) or not all(p.exists() for p in deps):
            continue
        outs = _timed_outputs(root, r, item, outs)
        newest_in = max(p.stat().st_mtime_ns for p in deps)
        if min(p.stat().st_mtime_ns for p in outs) > newest_in:
            continue  # in order, now that the stages before it are
        for p in outs:
            os.utime(p, ns=(newest_in + STEP_NS, newest_in + STEP_NS))
        fixed.append(name)
    return fixed


def commit_built(root: Path, graph: Graph) -> tuple[list[str], list[str]]:
    """`dvc commit` the stages Snakemake has built that dvc.lock does not record yet; returns
    (committed, left stale). A stage one of whose inputs is newer than its outputs (edited while
    the build ran) is not committed: dvc.lock would record bytes the stage never read."""
    if not (root / ".dvc").is_dir() or os.environ.get("MASKINSPECT_NO_DVC_COMMIT"):
        return [], []
    changed = dvc_changed(root) if (root / "dvc.lock").exists() else {n for n, _r, _i in graph.instances()}
    if changed is None:
        return [], []
    built, stale = [], []
    for name, r, item in graph.instances():
        if name not in changed:
            continue
        deps, outs = _instance_files(root, graph, r, item)
        if not outs or not all(p.exists() for p in outs):
            continue
        newest_in = max((p.stat().st_mtime_ns for p in deps if p.exists()), default=0)
        (built if min(p.stat().st_mtime_ns for p in outs) > newest_in else stale).append(name)
    dvc = shutil.which("dvc")
    if not built or dvc is None:
        return [], stale
    result = subprocess.run([dvc, "commit", "--force", "--quiet", *built], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError((result.stderr.strip().splitlines() or ["dvc commit failed"])[-1])
    return built, stale

"""`maskinspect status`: which stages are stale and why, as each front end sees it.

Snakemake's view is its dry run (a job per stale stage instance, with Snakemake's reason); DVC's
is DVC's own status (`dvc status`: what changed, deps, outs, params, the command). Both only look: nothing
outside `.snakemake/` changes.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from maskinspect.errors import PipelineError

_JOB = re.compile(r"^(?:local)?rule (\S+?):$")


def _tool(name: str) -> str:
    """The environment's own copy (beside this interpreter) first, then PATH's."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def snakemake_view(root: Path) -> tuple[dict[str, str], list[str]]:
    """rule (with its item, if any) -> Snakemake's reason, for every job a build would run; and
    the Snakefile's notes (file times a build will put in order first, a stale dvc.yaml)."""
    result = subprocess.run([_tool("snakemake"), "--dry-run", "--cores", "1"], cwd=root,
                            capture_output=True, text=True)
    if result.returncode != 0:
        said = [x.strip() for x in (result.stderr + result.stdout).splitlines() if x.strip()]
        lines = [x for x in said if "error" in x.lower()] or said
        raise PipelineError(f"snakemake --dry-run failed (exit {result.returncode}): "
                            f"{lines[-1] if lines else 'it printed nothing'}")
    jobs: dict[str, str] = {}
    notes = [x.removeprefix("Snakefile: note: ") for x in result.stderr.splitlines() if x.startswith("Snakefile: note:")]
    job: dict[str, str] = {}

    def close():
        if job.get("rule") not in (None, "all") and "reason" in job:
            jobs[f"{job['rule']}@{job['item']}" if job.get("item") else job["rule"]] = job["reason"]
        job.clear()

    for line in (result.stdout + result.stderr).splitlines():
        text = line.strip()
        match = _JOB.match(text)
        if match or not text:
            close()
            if match:
                job["rule"] = match.group(1)
        elif job and text.startswith("wildcards:"):
            job["item"] = text.split("item=")[-1].split(",")[0]
        elif job and text.startswith("reason:"):
            job["reason"] = text.removeprefix("reason:").strip()
    close()
    return jobs, notes


def _said(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_said(v)}" for k, v in value.items())
    return str(value)


def dvc_view(root: Path) -> dict[str, str]:
    """DVC stage -> what `dvc status` says changed, and the stages that rerun after them."""
    if not (root / ".dvc").is_dir():
        return {}
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            out = {stage: "; ".join(_changes(changes)) for stage, changes in repo.status().items()}
            # `dvc status` names only the stages whose own inputs changed; what reads their
            # outputs will rerun after them, so say so rather than call those stages up to date.
            for stage, upstream in _downstream(repo, set(out)).items():
                out.setdefault(stage, f"reruns after {', '.join(sorted(upstream))} (it reads what they write)")
    except DvcException as exc:
        raise PipelineError(f"dvc status failed: {exc}") from exc
    return out


def _changes(changes: list) -> list[str]:
    """`dvc status --json`'s list for one stage, in words."""
    said = []
    for change in changes:
        if isinstance(change, str):
            said.append(change)
            continue
        for kind, what in change.items():
            files = ", ".join(f"{k} ({_said(v)})" for k, v in what.items()) if isinstance(what, dict) else str(what)
            said.append(f"{kind}: {files}")
    return said


def _downstream(repo, changed: set[str]) -> dict[str, set[str]]:
    """Stage -> the changed stages it depends on, directly or not (DVC's own graph)."""
    if not changed:
        return {}
    import networkx as nx

    graph = repo.index.graph  # an edge goes from a stage to a stage it reads from
    by_name = {stage.addressing: stage for stage in graph.nodes}
    found: dict[str, set[str]] = {}
    for name in changed & set(by_name):
        for later in nx.ancestors(graph, by_name[name]):
            found.setdefault(later.addressing, set()).add(name)
    return {stage: upstream for stage, upstream in found.items() if stage not in changed}

"""Per stage instance, the command and the params values it runs with, as a file Snakemake
times like any other input (`.snakemake/stage-settings/<stage>.json`).

Snakemake runs with `rerun-triggers: mtime` (profiles/default): a changed param or command
rewrites this file, which makes exactly the stages that use it stale, by the same rule as any
other input. Snakemake's own records of params and code would not see a stage that DVC built,
so after `dvc repro` Snakemake would rebuild what DVC just built; this file stays right.
"""
from __future__ import annotations

import json
from pathlib import Path

from maskinspect.workflow import params as params_mod
from maskinspect.workflow.declare import Graph, Resolved
from maskinspect.workflow.dvcfile import tracked_params

FOLDER = ".snakemake/stage-settings"


def path(name: str) -> str:
    return f"{FOLDER}/{name}.json"


def settings_text(r: Resolved, item: str | None, params: dict) -> str:
    values = {k: params_mod.get(params, k) for k in tracked_params(r.stage.params, params)}
    return json.dumps({"cmd": r.expand(r.command(), item), "params": values}, sort_keys=True, indent=1) + "\n"


def write(root: Path, graph: Graph, params: dict) -> list[str]:
    """Write the settings files that changed; returns their names. Inside .snakemake/: Snakemake's
    own state folder, so looking at the graph writes nothing else.

    An unchanged file keeps its time. A changed one gets the time of the newest file that decides
    its content (params.yaml, the stage table, the Snakefile): that is when the stage's settings
    changed. So a stage DVC rebuilt after that change is not stale to Snakemake, and one nobody
    rebuilt is."""
    import os

    from maskinspect.atomic import write_text

    deciders = [root / "params.yaml", root / "Snakefile", *sorted((root / "maskinspect" / "workflow").glob("*.py"))]
    changed_at = max(p.stat().st_mtime_ns for p in deciders if p.exists())
    changed = []
    for name, r, item in graph.instances():
        target = root / path(name)
        text = settings_text(r, item, params)
        if not target.exists() or target.read_text() != text:
            write_text(target, text)
            os.utime(target, ns=(changed_at, changed_at))
            changed.append(name)
    return changed

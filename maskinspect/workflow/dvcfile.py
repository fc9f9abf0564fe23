"""dvc.yaml, written from the stage table: the same commands, files and params as the Snakefile.

Every output is `persist: true`: DVC then leaves the previous output in place while a stage
runs, as Snakemake does, instead of deleting it first. The stages write each output under a
temporary name and rename it into place only once all of them are complete, so a stage that
fails (a params typo, bad input, an interrupt, a full disk) leaves the last good outputs and
dvc.lock as they were. Everything under metrics/ is small and kept in git (`cache: false`).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from maskinspect.workflow import params as params_mod
from maskinspect.workflow.declare import Graph, Resolved
from maskinspect.workflow.stages import ARTIFACTS

HEADER = ("# GENERATED from maskinspect/workflow/stages.py by scripts/sync_dvc.py (the Snakefile\n"
          "# regenerates it when stale). Do not edit: change the stage table.\n")


def dvc_template(text: str) -> str:
    return text.replace("{item.path}", "${item.path}").replace("{item}", "${key}")


def tracked_params(stage_params: tuple[str, ...], params: dict) -> list[str]:
    """The keys DVC tracks for a stage: as written, so a stage that reads `model` also depends on
    the recipe's `model` when the recipe applies."""
    keys = list(stage_params)
    recipe = params_mod.recipe_for(params)
    if recipe:
        keys += [f"{recipe}.{k}" for k in stage_params if _has(params[recipe], k)]
    return keys


def _has(tree: dict, dotted: str) -> bool:
    try:
        params_mod.get(tree, dotted)
        return True
    except (KeyError, TypeError):
        return False


def _entry(r: Resolved, graph: Graph, params: dict, root: Path) -> dict:
    st = r.stage
    entry: dict = {"cmd": dvc_template(r.command())}
    entry["deps"] = [*graph.code(r), *(dvc_template(d) for d in r.deps(graph.produced))]
    keys = tracked_params(st.params, params)
    if keys:
        entry["params"] = keys
    outs = []
    for out in r.outs():
        spec = {"persist": True}
        if out.startswith("metrics/"):
            spec["cache"] = False
        outs.append({dvc_template(out): spec})
    entry["outs"] = outs
    return entry


def document(graph: Graph, params: dict, root: Path) -> dict:
    stages: dict[str, dict] = {}
    metrics: list[str] = []
    plots: list = []
    for r in graph.stages:
        st = r.stage
        entry = _entry(r, graph, params, root)
        stages[st.name] = {"foreach": {k: dict(v) for k, v in r.items.items()}, "do": entry} if st.foreach else entry
        metrics += [r.output(role) for role in st.metrics]
        plots += [{r.output(role): dict(spec)} if spec else r.output(role) for role, spec in st.plots.items()]
    doc: dict = {"stages": stages}
    if metrics:
        doc["metrics"] = metrics
    if plots:
        doc["plots"] = plots
    doc["artifacts"] = {name: dict(spec) for name, spec in ARTIFACTS.items()}
    return doc


def text(graph: Graph, params: dict, root: Path) -> str:
    body = yaml.safe_dump(document(graph, params, root), sort_keys=False, default_flow_style=False, width=1000)
    return HEADER + body


def sync(root: Path, graph: Graph, params: dict) -> bool:
    """Rewrite dvc.yaml when it differs from the table. Returns True when it changed."""
    from maskinspect.atomic import write_text

    new = text(graph, params, root)
    target = root / "dvc.yaml"
    if target.exists() and target.read_text() == new:
        return False
    write_text(target, new)
    return True


def is_current(root: Path, graph: Graph, params: dict) -> bool:
    target = root / "dvc.yaml"
    return target.exists() and target.read_text() == text(graph, params, root)

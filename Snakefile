# Snakemake front end. The stages are declared once, in maskinspect/workflow/stages.py, and
# dvc.yaml is written from the same table, so `snakemake` and `dvc repro` run the very same
# commands. What the two front ends need from each other is in maskinspect/workflow/agreement.py.
import os
import re
import shlex
import sys
from pathlib import Path

from maskinspect import params as params_mod
from maskinspect.errors import PipelineError
from maskinspect.workflow import agreement, dvcfile, frontend, locks, settings, stages


def fail(message):
    print(f"Snakefile: error: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"Snakefile: {message}", file=sys.stderr)


if config:
    fail("settings live in params.yaml: edit it, or run `dvc exp run -S key=value`; "
         "Snakemake's --config and --configfile are not used")

ROOT = Path(workflow.basedir)
try:
    PARAMS = params_mod.load_raw(ROOT / "params.yaml", "params.yaml")  # validated, as written: DVC tracks these keys
    GRAPH = stages.graph(PARAMS, ROOT)
    GPUS = frontend.gpus()
except PipelineError as exc:
    fail(exc)

# Every command and path is relative to the repository root, wherever snakemake is started.
workdir: ROOT

# The image each rule runs in with `snakemake --sdm apptainer`: none unless MASKINSPECT_IMAGE
# names one (scripts/build_image.sh builds it; see README, "Container").
IMAGE = os.environ.get("MASKINSPECT_IMAGE") or None
# The conda environment each rule runs in with `snakemake --sdm conda`: the lock, hashes
# required (envs/conda_env.py writes it). Such an environment does not hold the project's own
# package, so every rule finds it here, as .venv's linked install does.
CONDA_ENV = "envs/pipeline.conda.yaml"
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(str(ROOT))}; ")

# A build takes the checkout, puts file times in order where dvc.lock vouches for the bytes, and
# keeps dvc.yaml current; a command that only looks (-n, --lint, --summary, ...) changes nothing
# outside .snakemake/.
BUILDING = workflow.is_main_process and not frontend.looking(sys.argv)
settings.write(ROOT, GRAPH, PARAMS)
if BUILDING:
    try:
        BUILD_LOCK = locks.BuildLock(ROOT)
        for note in BUILD_LOCK.acquire(" ".join(sys.argv)):
            say(note)
    except PipelineError as exc:
        fail(exc)
    if dvcfile.sync(ROOT, GRAPH, PARAMS):
        say("dvc.yaml regenerated from maskinspect/workflow/stages.py")
    _restored = agreement.restore_times(ROOT, GRAPH)
    if _restored:
        say(f"{len(_restored)} stage(s) hold the bytes dvc.lock records; their output times were put in order")
elif workflow.is_main_process:
    if not dvcfile.is_current(ROOT, GRAPH, PARAMS):
        say("note: dvc.yaml is stale; a build (or scripts/sync_dvc.py) regenerates it")
    _unordered = agreement.out_of_order(ROOT, GRAPH)
    if _unordered:
        say(f"note: {len(_unordered)} stage(s) have outputs older than their inputs; a build first puts the "
            f"times of those whose bytes dvc.lock records in order instead of rebuilding them")


onsuccess:
    if BUILDING:
        try:
            _committed, _stale = agreement.commit_built(ROOT, GRAPH)
        except RuntimeError as exc:
            say(f"warning: dvc commit failed, dvc.lock not updated: {exc}")
        else:
            if _committed:
                say(f"dvc commit: {', '.join(_committed)}")
                # dvc commit links cached outputs back in, giving them fresh times in its own order;
                # put them back in graph order so the finished build stays up to date to Snakemake.
                agreement.restore_times(ROOT, GRAPH)
            for name in _stale:
                say(f"{name}: an input changed while the build ran; not recorded in dvc.lock (run the build again)")


rule all:
    default_target: True
    input:
        GRAPH.final_targets(),


def _rule_for(r):
    """One rule per stage; a foreach stage becomes one rule with an {item} wildcard."""
    st = r.stage
    command = r.command().replace("{item.path}", "{params.item_path}").replace("{item}", "{wildcards.item}")
    inputs = r.snakemake_inputs(GRAPH.produced)
    if st.foreach:
        expand = lambda paths: (lambda wc: [r.expand(p, wc.item) for p in paths])
        inputs = {role: expand(paths) for role, paths in inputs.items()}
        inputs["settings"] = settings.path(f"{st.name}@{{item}}")
        item_path = lambda wc: r.items[wc.item]["path"]
        constraint = "|".join(re.escape(k) for k in r.items)
    else:
        inputs["settings"] = settings.path(st.name)
        item_path = ""
        constraint = ".+"
    outputs = {role: r.role_paths(value) for role, value in st.outputs.items()}
    plots = set(st.plots)
    resources = stages.requests(st.name)
    if "gpu" in resources:
        resources["gpu"] = GPUS
        if not GPUS:
            del resources["gpu"]

    rule:
        name: st.name
        input:
            code=GRAPH.code(r),
            **inputs,
        output:
            **{role: (report(paths[0], category="metrics") if role in plots else paths)
               for role, paths in outputs.items()},
        log:
            st.log("{item}" if st.foreach else None),
        benchmark:
            st.benchmark("{item}" if st.foreach else None)
        params:
            item_path=item_path,
        wildcard_constraints:
            item=constraint,
        container: IMAGE
        conda: CONDA_ENV
        threads: PARAMS["runtime"]["threads"] if st.threads else 1
        resources:
            **resources,
        shell:
            command


for _stage in GRAPH.stages:
    _rule_for(_stage)

# Snakemake front end. The stages are declared once, in maskinspect/workflow/stages.py, and
# dvc.yaml is written from the same table, so `snakemake` and `dvc repro` run the very same
# commands. What the two front ends need from each other is in maskinspect/workflow/agreement.py.
import os
import re
import shlex
import sys
from pathlib import Path

from maskinspect.data import handoff
from maskinspect.errors import EXIT_LABELS_NEEDED, PipelineError
from maskinspect.workflow import agreement, dvcfile, frontend, locks, settings, stages
from maskinspect.workflow import params as params_mod


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
    GPU_REQUEST = frontend.gpu_request()
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
        if LABELS_NEEDED:  # not a failure: the build stops for a person, says what is needed, and how
            print(LABELS_NEEDED["screen"], file=sys.stderr)
            sys.exit(EXIT_LABELS_NEEDED)


# Frames of real videos may lack labels. The selection is then a checkpoint: once it is made, the
# build either goes on (every chosen frame has a label) or hands the frames off to a person and
# stops there, with a short screen and exit 3, instead of failing in the annotate stage.
ASKS_FOR_LABELS = GRAPH.layout.from_videos and not GRAPH.layout.demo
LABELS_NEEDED = {}
# Rewritten (new content: Snakemake compares the checksums of small inputs, not only their times)
# while labels are missing, so the hand-off is made afresh by each build, which then ends with the screen.
WAITING = ".snakemake/labels-needed"


def _waiting() -> None:
    import time

    (ROOT / WAITING).parent.mkdir(exist_ok=True)
    (ROOT / WAITING).write_text(f"{time.time_ns()}\n")
BEFORE_LABELS = ("render_demo", "extract_frames", "pack_images", "pretrain", "embed", "select_frames")


def _missing_labels():
    """(frames of the selection there is that lack labels, the test sample, how many were chosen);
    None when there is no selection yet or the labels file is in a bad state (the annotate stage
    then says what is wrong)."""
    try:
        return handoff.missing_labels(ROOT, GRAPH.layout.labels, stages.SELECTED, stages.TEST_SAMPLE)
    except (PipelineError, OSError):
        return None


if ASKS_FOR_LABELS and BUILDING and (_missing_labels() or ([],))[0]:
    _waiting()  # before Snakemake looks at any file time


def _targets(wildcards):
    """The default target: everything, or, while labels are missing, the hand-off (and the screen
    at the end: set here, so that a build of other targets is not told about labels)."""
    if not ASKS_FOR_LABELS:
        return GRAPH.final_targets()
    checkpoints.select_frames.get()
    found = _missing_labels()
    LABELS_NEEDED.clear()
    if not found or not found[0]:
        return GRAPH.final_targets()
    missing, test, total = found
    LABELS_NEEDED["screen"] = handoff.screen(missing, test, total, PARAMS["data"]["labels"])
    if not (ROOT / WAITING).exists():
        _waiting()
    return [*(r.expand(p, item) for _n, r, item in GRAPH.instances() if r.stage.name in BEFORE_LABELS
              for p in r.outs()), f"{handoff.FOLDER}/queue.json"]


rule all:
    default_target: True
    input:
        _targets,


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
    if resources.pop("gpu", None):
        resources.update(GPU_REQUEST)

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
        priority: 0 if st.later else 10
        resources:
            **resources,
        shell:
            command


def _checkpoint_for(r):
    """select_frames as a checkpoint (see ASKS_FOR_LABELS): one job, no wildcards, no GPU."""
    st = r.stage
    checkpoint:
        name: st.name
        input:
            code=GRAPH.code(r),
            settings=settings.path(st.name),
            **r.snakemake_inputs(GRAPH.produced),
        output:
            **{role: r.role_paths(value) for role, value in st.outputs.items()},
        log:
            st.log(),
        benchmark:
            st.benchmark()
        container: IMAGE
        conda: CONDA_ENV
        resources:
            **stages.requests(st.name),
        shell:
            r.command()


def _hand_off_rule(r):
    """The frames that lack labels, handed off to a person: the annotate stage's command with
    --hand-off-only (it writes data/labels/to_label/ and stops there, exit 0)."""
    rule:
        name: "hand_off"
        input:
            code=GRAPH.code(r),
            waiting=WAITING,
            **r.snakemake_inputs(GRAPH.produced),
        output:
            f"{handoff.FOLDER}/queue.json",
        log:
            "logs/annotate/hand_off.log",
        container: IMAGE
        conda: CONDA_ENV
        shell:
            r.command().replace(" --log ", " --hand-off-only --log ").replace(r.stage.log(), "logs/annotate/hand_off.log")


for _stage in GRAPH.stages:
    if _stage.stage.name == "select_frames" and ASKS_FOR_LABELS:
        _checkpoint_for(_stage)
    else:
        _rule_for(_stage)
    if _stage.stage.name == "annotate" and ASKS_FOR_LABELS:
        _hand_off_rule(_stage)

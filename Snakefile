# Snakemake front end of the pipeline. The graph itself is defined once, in
# maskinspect/pipeline.py; dvc.yaml is generated from the same definition, so
# `snakemake --cores all` and `dvc repro` run the very same commands.
import os
import re
import sys
from pathlib import Path

from maskinspect import dvc_sync, params as params_mod, pipeline
from maskinspect.errors import PipelineError

try:
    ROOT = Path(workflow.basedir)
    PARAMS = params_mod.load_raw(ROOT / "params.yaml")  # as written: DVC tracks these keys
    STAGES = pipeline.stages(PARAMS, ROOT)
    if pipeline.sync_dvc_yaml(ROOT):
        print("Snakefile: dvc.yaml regenerated from maskinspect/pipeline.py", file=sys.stderr)
except PipelineError as exc:
    print(f"Snakefile: error: {exc}", file=sys.stderr)
    sys.exit(1)

# Every command and path is relative to the repository root, wherever snakemake is started.
workdir: ROOT

# The image every rule runs in with `snakemake --sdm apptainer` (ignored otherwise), built
# from the Dockerfile by scripts/build_image.sh. MASKINSPECT_IMAGE names another, e.g. the
# local build exported with `buildah push localhost/maskinspect oci-archive:/srv/maskinspect.tar`
# as oci-archive:///srv/maskinspect.tar.
IMAGE = os.environ.get("MASKINSPECT_IMAGE", "docker://ghcr.io/maskinspect/maskinspect:latest")

# Each stage's command and params as a file it depends on (see pipeline.settings_file).
pipeline.write_settings(ROOT, STAGES, PARAMS)

if workflow.is_main_process:
    # After `dvc pull`, `git checkout` or `dvc repro`, put output times back in order where
    # the bytes are those of dvc.lock, so fresh file times alone rebuild nothing.
    _restored = dvc_sync.restore_mtimes(ROOT, STAGES, PARAMS)
    if _restored:
        print(f"Snakefile: {len(_restored)} stage(s) match dvc.lock; output times put back in order", file=sys.stderr)
    _OUTPUT_TIMES = dvc_sync.output_times(ROOT, STAGES)


onsuccess:
    # Record what Snakemake built in dvc.lock (and the DVC cache): `dvc status` then agrees.
    _committed = dvc_sync.commit_changed(ROOT, STAGES, _OUTPUT_TIMES)
    if _committed:
        print(f"Snakefile: dvc commit: {', '.join(_committed)}", file=sys.stderr)


rule all:
    default_target: True
    input:
        pipeline.final_targets(PARAMS, ROOT),


def _rule_for(st):
    """One rule per stage; a foreach stage becomes one rule with an {item} wildcard."""
    shell_cmd = st.cmd.replace("{item.path}", "{params.item_path}").replace("{item}", "{wildcards.item}")
    if st.foreach:
        resolve = lambda text: (lambda wc: pipeline.expand(st, text, wc.item))
        inputs = {name: resolve(path) for name, path in st.deps.items()}
        inputs["settings"] = pipeline.settings_file(f"{st.name}@{{item}}")
        item_path = lambda wc: st.foreach[wc.item]["path"]
        constraint = "|".join(re.escape(k) for k in st.foreach)
    else:
        inputs = {**st.deps, "settings": pipeline.settings_file(st.name)}
        item_path = ""
        constraint = ".+"

    rule:
        name: st.name
        input:
            code=st.code(ROOT),
            **inputs,
        output:
            **{name: (report(path, category="metrics") if isinstance(path, str) and path in st.plots else path)
               for name, path in st.outs.items()},
        params:
            item_path=item_path,
        wildcard_constraints:
            item=constraint,
        container: IMAGE
        threads: st.threads
        resources:
            **st.resources,
        shell:
            shell_cmd


for _stage in STAGES:
    _rule_for(_stage)

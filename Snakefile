# Snakemake front end of the pipeline. The graph itself is defined once, in
# maskinspect/pipeline.py; dvc.yaml is generated from the same definition, so
# `snakemake --cores all` and `dvc repro` run the very same commands.
import re
import sys
from pathlib import Path

from maskinspect import params as params_mod, pipeline
from maskinspect.errors import PipelineError

try:
    ROOT = Path(workflow.basedir)
    PARAMS = params_mod.load(ROOT / "params.yaml")
    STAGES = pipeline.stages(PARAMS, ROOT)
    if pipeline.sync_dvc_yaml(ROOT):
        print("Snakefile: dvc.yaml regenerated from maskinspect/pipeline.py", file=sys.stderr)
except PipelineError as exc:
    print(f"Snakefile: error: {exc}", file=sys.stderr)
    sys.exit(1)

# Every command and path is relative to the repository root, wherever snakemake is started.
workdir: ROOT


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
        item_path = lambda wc: st.foreach[wc.item]["path"]
        constraint = "|".join(re.escape(k) for k in st.foreach)
    else:
        inputs = dict(st.deps)
        item_path = ""
        constraint = ".+"

    rule:
        name: st.name
        input:
            code=st.code(ROOT),
            **inputs,
        output:
            **st.outs,
        params:
            values=pipeline.snakemake_params(st, PARAMS),
            item_path=item_path,
        wildcard_constraints:
            item=constraint,
        threads: st.threads
        resources:
            **st.resources,
        shell:
            shell_cmd


for _stage in STAGES:
    _rule_for(_stage)

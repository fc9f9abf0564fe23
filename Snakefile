# Snakemake front end of the pipeline. The graph itself is defined once, in
# maskinspect/pipeline.py; dvc.yaml is generated from the same definition, so
# `snakemake --cores all` and `dvc repro` run the very same commands.
import re
import sys

from maskinspect import params as params_mod, pipeline
from maskinspect.errors import PipelineError

try:
    PARAMS = params_mod.load(workflow.basedir + "/params.yaml")
    STAGES = pipeline.stages(PARAMS)
    if pipeline.sync_dvc_yaml():
        print("Snakefile: dvc.yaml regenerated from maskinspect/pipeline.py", file=sys.stderr)
except PipelineError as exc:
    print(f"Snakefile: error: {exc}", file=sys.stderr)
    sys.exit(1)


rule all:
    default_target: True
    input:
        pipeline.final_targets(PARAMS),


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
            code=st.code(),
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

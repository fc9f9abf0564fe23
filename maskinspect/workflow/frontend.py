"""What the Snakefile asks of the environment it is parsed in."""
from __future__ import annotations

import os

from maskinspect.errors import PipelineError

# Snakemake invocations that only look (plan, lint, summarise, draw, report): they must leave
# every file outside .snakemake/ as it is, so the Snakefile takes no lock and touches nothing.
LOOKING = ("dryrun", "lint", "summary", "detailed_summary", "list_rules", "list_target_rules", "dag",
           "rulegraph", "filegraph", "d3dag", "report", "list_changes", "unlock", "cleanup_metadata",
           "containerize", "list_conda_envs", "print_compilation", "export_cwl", "archive",
           "generate_unit_tests", "debug_dag")


def looking(argv: list[str]) -> bool:
    """Whether this `snakemake` command line only looks (read with Snakemake's own parser)."""
    from snakemake.cli import get_argument_parser

    try:
        args, _unknown = get_argument_parser().parse_known_args(argv[1:])
    except SystemExit:  # not a snakemake command line (the Python API): it builds
        return False
    return any(getattr(args, name, None) not in (None, False) for name in LOOKING)


def gpu_request() -> dict:
    """What a training stage asks a cluster for: `gpu: N` (MASKINSPECT_GPUS, default 1; 0: nothing),
    or, where the cluster names its GPUs as a generic resource, `gres` as MASKINSPECT_GPU_GRES
    says (e.g. gpu:a100:1; SLURM's --gres). The two are exclusive, as the SLURM plugin has them."""
    count = gpus()
    if count == 0:
        return {}
    gres = os.environ.get("MASKINSPECT_GPU_GRES", "").strip()
    return {"gres": gres} if gres else {"gpu": count}


def gpus() -> int:
    """GPUs a training job asks a cluster for: MASKINSPECT_GPUS (default 1; 0 for none)."""
    value = os.environ.get("MASKINSPECT_GPUS", "1")
    if not value.isdigit():
        raise PipelineError(f"MASKINSPECT_GPUS={value!r}: expected a number of GPUs (0 for none)")
    return int(value)

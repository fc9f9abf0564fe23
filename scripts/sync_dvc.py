"""Regenerate dvc.yaml from the stage table (maskinspect/workflow/stages.py) and params.yaml.

Run it after changing the graph: adding stages, changing demo.videos or data.source, or
putting videos into data.videos_dir. (A Snakemake build does the same when it starts.)
`--check` only reports whether dvc.yaml is current (exit 1 when stale).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskinspect.workflow import runner as cli, params as params_mod
from maskinspect.workflow import dvcfile, stages

ROOT = Path(__file__).resolve().parent.parent


@cli.tool("sync_dvc")
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml is stale; write nothing")
    args = p.parse_args(argv)
    params = params_mod.load_raw(ROOT / "params.yaml")
    graph = stages.graph(params, ROOT)
    if args.check:
        if not dvcfile.is_current(ROOT, graph, params):
            print("sync_dvc: dvc.yaml is stale; run python scripts/sync_dvc.py", file=sys.stderr)
            return 1
        print("sync_dvc: dvc.yaml is current", file=sys.stderr)
        return 0
    changed = dvcfile.sync(ROOT, graph, params)
    print(f"sync_dvc: dvc.yaml {'regenerated' if changed else 'already current'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

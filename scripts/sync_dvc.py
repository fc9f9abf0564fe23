"""Regenerate dvc.yaml from the pipeline definition (maskinspect/pipeline.py) and params.yaml.

Run it after changing the graph: adding stages, changing demo.videos or data.source, or
putting videos into data.videos_dir. (The Snakefile does the same on every run.)
`--check` only reports whether dvc.yaml is current (exit 1 when stale).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskinspect import cli, params as params_mod, pipeline

ROOT = Path(__file__).resolve().parent.parent


@cli.stage("sync_dvc")
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml is stale; write nothing")
    args = p.parse_args(argv)
    if args.check:
        text = pipeline.dvc_yaml_text(params_mod.load_raw(ROOT / "params.yaml"), ROOT)
        current = (ROOT / "dvc.yaml").read_text() if (ROOT / "dvc.yaml").exists() else ""
        if current != text:
            print("sync_dvc: dvc.yaml is stale; run python scripts/sync_dvc.py", file=sys.stderr)
            return 1
        print("sync_dvc: dvc.yaml is current", file=sys.stderr)
        return 0
    changed = pipeline.sync_dvc_yaml(ROOT)
    print(f"sync_dvc: dvc.yaml {'regenerated' if changed else 'already current'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

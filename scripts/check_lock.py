"""Compare two dvc.lock files: did a rebuild reproduce the recorded results bit for bit?

    python scripts/check_lock.py committed/dvc.lock dvc.lock

Prints one line per stage and file whose hash differs (or that is missing) and exits 1;
prints a summary and exits 0 when every output matches.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from maskinspect.workflow import runner as cli
from maskinspect.errors import PipelineError


def outputs(path: Path) -> dict[tuple[str, str], str]:
    try:
        stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"{path}: cannot read a dvc.lock ({exc})") from None
    return {(name, o["path"]): o.get("md5", "?") for name, st in stages.items() for o in st.get("outs", [])}


@cli.tool("check_lock")
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("expected", type=Path, help="the committed dvc.lock")
    p.add_argument("actual", type=Path, help="the dvc.lock the rebuild wrote")
    args = p.parse_args(argv)
    expected, actual = outputs(args.expected), outputs(args.actual)
    problems = []
    for (stage, path), md5 in sorted(expected.items()):
        got = actual.get((stage, path))
        if got is None:
            problems.append(f"stage {stage}: {path} was not rebuilt")
        elif got != md5:
            problems.append(f"stage {stage}: {path} differs (md5 {got}, dvc.lock has {md5})")
    for stage, path in sorted(set(actual) - set(expected)):
        problems.append(f"stage {stage}: {path} is new (not in the committed dvc.lock)")
    for line in problems:
        print(f"check_lock: {line}", file=sys.stderr)
    if problems:
        print(f"check_lock: {len(problems)} of {len(expected)} outputs do not reproduce", file=sys.stderr)
        return 1
    print(f"check_lock: all {len(expected)} outputs of {len({s for s, _ in expected})} stages reproduce "
          f"bit for bit", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

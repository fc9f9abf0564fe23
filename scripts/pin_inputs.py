"""Write the pin of an outside input (pins/<name>.yaml) from a local copy of its files.

    scripts/venv.sh python scripts/pin_inputs.py NAME --repository OWNER/REPO --commit SHA \
        --folder PATH/IN/REPO --mirror PATH/IN/MIRROR --licence SPDX --what "one line" \
        --from LOCAL/FOLDER [--kind file|tree] [--only GLOB ...]

Every file under --from (or those matching --only) is pinned by its path, size and sha256.
The copy must be the repository's own bytes at that commit (a checkout, or a mirror such as
../shared): check it before pinning, e.g. with `git hash-object` against `git ls-tree`.
A pin is checked on use, never trusted: a wrong one fails the build, it cannot corrupt it.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

from maskinspect.workflow import runner as cli
from maskinspect.atomic import write_text
from maskinspect.errors import PipelineError
from maskinspect.workflow import pinned

ROOT = Path(__file__).resolve().parent.parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pin_text(args: argparse.Namespace, files: list[Path]) -> str:
    base = args.source
    doc = {
        "name": args.name, "what": args.what, "repository": args.repository, "commit": args.commit,
        "folder": args.folder, "licence": args.licence, "mirror": args.mirror, "kind": args.kind,
        "files": [{"path": f.relative_to(base).as_posix(), "size": f.stat().st_size, "sha256": sha256(f)}
                  for f in files],
    }
    head = (f"# {args.name}: an outside input, fetched by pin (maskinspect/workflow/pinned.py).\n"
            f"# Written by scripts/pin_inputs.py; upstream: https://github.com/{args.repository}/tree/{args.commit}"
            f"{'/' + args.folder if args.folder else ''}\n")
    return head + yaml.safe_dump(doc, sort_keys=False, width=200)


@cli.tool("pin_inputs")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("--repository", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--folder", default="")
    p.add_argument("--mirror", required=True, help="the input's folder inside a mirror laid out like ../shared")
    p.add_argument("--licence", required=True)
    p.add_argument("--what", required=True)
    p.add_argument("--from", dest="source", type=Path, required=True, help="a local copy of the input's folder")
    p.add_argument("--kind", choices=("file", "tree"), default="tree")
    p.add_argument("--only", nargs="+", default=["**/*"], help="glob patterns of the files to pin (default: all)")
    args = p.parse_args(argv)
    if len(args.commit) != 40:
        raise PipelineError(f"--commit: the full 40-digit hash, not {args.commit!r}")
    if not args.source.is_dir():
        raise PipelineError(f"{args.source}: no such folder")
    files = sorted({f for pattern in args.only for f in args.source.glob(pattern) if f.is_file()})
    if not files:
        raise PipelineError(f"{args.source}: no files match {' '.join(args.only)}")
    if args.kind == "file" and len(files) != 1:
        raise PipelineError(f"--kind file: {len(files)} files match, not one")
    target = ROOT / pinned.pin_path(args.name)
    write_text(target, pin_text(args, files))
    pin = pinned.read(target)
    print(f"pin_inputs: {target.relative_to(ROOT)}: {len(pin.files)} files, "
          f"{sum(f.size for f in pin.files):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

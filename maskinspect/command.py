"""`maskinspect`: the project's command for the questions a person asks of it.

    maskinspect checkout [TARGET ...]   dvc checkout, every cache object verified first
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PipelineError


def _checkout(args: argparse.Namespace) -> int:
    """Verify the DVC cache objects dvc.lock names (a corrupted one is named, removed from the
    cache and never checked out), then check the workspace out from the cache."""
    from dvc.repo import Repo
    from dvc_data.hashfile.db import HashFileDB  # noqa: F401 - the cache's type
    from dvc_objects.errors import ObjectFormatError

    root = Path(args.repo).resolve()
    corrupted = []
    with Repo(str(root)) as repo:
        odb = repo.cache.local
        for out in repo.index.outs:
            if not out.use_cache or not out.hash_info or not out.hash_info.value:
                continue
            oids = [out.hash_info.value]
            if out.hash_info.isdir:
                try:
                    tree = out.get_obj()
                    oids += [entry.hash_info.value for _key, _meta, entry in tree] if tree else []
                except (FileNotFoundError, ObjectFormatError):
                    pass
            for oid in oids:
                try:
                    odb.check(oid)
                except FileNotFoundError:
                    continue  # not in the cache: dvc checkout says so itself
                except ObjectFormatError:
                    corrupted.append(out.def_path)
                    break
        for path in corrupted:
            print(f"maskinspect checkout: error: {path}: its object in the DVC cache is corrupted "
                  f"(removed from the cache; `dvc pull` fetches it again, or rebuild it)", file=sys.stderr)
        try:
            repo.checkout(targets=args.targets or None, force=args.force)
        except Exception as exc:  # noqa: BLE001 - DVC's checkout errors are many; say what it said
            if not corrupted:
                print(f"maskinspect checkout: error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
    return 1 if corrupted else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskinspect", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    co = sub.add_parser("checkout", help="dvc checkout, with every cache object it uses verified first")
    co.add_argument("targets", nargs="*", help="outputs or stages to check out (default: all)")
    co.add_argument("--force", action="store_true", help="replace workspace files without asking")
    co.add_argument("--repo", default=".", help="the checkout (default: the current folder)")
    co.set_defaults(run=_checkout)
    args = p.parse_args(argv)
    try:
        return args.run(args)
    except PipelineError as exc:
        print(f"maskinspect {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

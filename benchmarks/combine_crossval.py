"""Combine metrics/crossval.json files of runs on different splits into one figure.

The repeated cross-validation can be run in parts (crossval.repeats=1, then crossval.repeats=2
with crossval.seed one higher: real_data_experiments.py's camera-augment-1.0-r1 and -splits23);
this prints what one run over all the splits would have written: mean and standard deviation
over every fold, pooled recall over every frame of every split, stored frames and camera path.

    scripts/venv.sh python benchmarks/combine_crossval.py A/crossval.json B/crossval.json
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def crossval_stage():
    """scripts/crossval.py, whose summarise() writes crossval.json: the same figures, one code."""
    spec = importlib.util.spec_from_file_location("crossval_stage", ROOT / "scripts" / "crossval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def combine(parts: list[dict]) -> dict:
    folds, pooled = [], {"stored": ([], []), "camera": ([], [])}
    repeats = 0
    for part in parts:
        # repeats numbered on from the previous part's, as one run numbers them
        folds += [{**f, "repeat": f["repeat"] + repeats} for f in part["per_fold"]]
        repeats += part["repeats"]
        # the pooled (actual, predicted) pairs, back from the confusion matrices
        for path, key in (("stored", "pooled"), ("camera", "camera_pooled")):
            confusion = part[key]["confusion"]
            for i, row in enumerate(confusion["matrix"]):
                for j, n in enumerate(row):
                    pooled[path][0].extend([confusion["classes"][i]] * n)
                    pooled[path][1].extend([confusion["classes"][j]] * n)
    return crossval_stage().summarise({"folds": parts[0]["folds"], "repeats": repeats}, folds, pooled)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="metrics/crossval.json of each part")
    args = p.parse_args()
    parts = []
    for name in args.files:
        try:
            parts.append(json.loads(open(name).read()))
        except (OSError, ValueError) as e:
            sys.exit(f"combine_crossval: {name}: {e}")
        if "per_fold" not in parts[-1]:
            sys.exit(f"combine_crossval: {name}: not a crossval.json (no per_fold)")
        if parts[-1]["folds"] != parts[0]["folds"]:
            sys.exit(f"combine_crossval: {name}: {parts[-1]['folds']} folds a split, {args.files[0]} has "
                     f"{parts[0]['folds']}: parts of one cross-validation have the same crossval.folds")
    print(json.dumps(combine(parts), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

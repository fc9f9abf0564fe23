"""Combine metrics/crossval.json files of runs on different splits into one figure.

The repeated cross-validation can be run in parts (crossval.repeats=1, then crossval.repeats=2
with crossval.seed one higher: real_data_experiments.py's camera-augment-1.0-r1 and -splits23);
this prints what one run over all the splits would have written: mean and standard deviation
over every fold, pooled recall over every frame of every split, stored frames and camera path.

    scripts/venv.sh python benchmarks/combine_crossval.py A/crossval.json B/crossval.json
"""
import argparse
import json
import sys

import numpy as np

from maskinspect.evaluation import report


def combine(parts: list[dict]) -> dict:
    folds = [f for part in parts for f in part["per_fold"]]
    out = {"folds": len(folds)}
    for prefix, pooled in (("", "pooled"), ("camera_", "camera_pooled")):
        bal = [f[f"{prefix}balanced_accuracy"] for f in folds]
        out[f"{prefix}balanced_accuracy_mean"] = round(float(np.mean(bal)), 4)
        out[f"{prefix}balanced_accuracy_std"] = round(float(np.std(bal)), 4)
        # the pooled (actual, predicted) pairs back from the confusion matrices, scored by the
        # pipeline's own report(): the figures crossval would have written
        actual, predicted = [], []
        for part in parts:
            confusion = part[pooled]["confusion"]
            for i, row in enumerate(confusion["matrix"]):
                for j, n in enumerate(row):
                    actual += [confusion["classes"][i]] * n
                    predicted += [confusion["classes"][j]] * n
        every = report(actual, predicted)
        out[pooled] = {k: every[k] for k in ("accuracy", "balanced_accuracy", "recall", "confusion")}
    return out


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
    print(json.dumps(combine(parts), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

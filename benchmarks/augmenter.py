"""Does fine-tuning's batched augmentation (finetune.augmenter: batched) train as good a model as
the PIL path it stands in for, and how much sooner?

    scripts/venv.sh python benchmarks/augmenter.py [--repeats 2] [--out augmenter.json]

On the published camera's 299 labelled frames, split as benchmarks/train_on_all.py splits them
(by video time, stratified, 3 folds, each in turn unseen, on --repeats splits): the real-data
recipe of params.yaml (camera-path training for every sample) trained on the other two thirds
with `pil` and with `batched`, the same seed, and scored on the unseen frames through the camera
path. Prints each path's mean ± standard deviation, the paired difference, and the seconds a fit
took (both on this machine, in one run). The two paths draw different random numbers, so a
difference within the spread of the folds is a tie.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from label_efficiency import fit, score  # noqa: E402 - puts the checkout on the path
from train_on_all import folds_run, pending_folds  # noqa: E402

PATHS = ("pil", "batched")


def main() -> int:
    args, cfg, model_cfg, data, rows = folds_run(__doc__.split("\n\n")[0])
    for repeat, fold, rest, unseen in pending_folds(data, args.repeats, len(rows)):
        row = {"repeat": repeat, "fold": fold, "n_train": len(rest), "n_unseen": len(unseen)}
        for path in PATHS:
            start = time.perf_counter()
            model = fit(data, model_cfg, {**cfg, "augmenter": path}, rest, seed=10 * repeat + fold)
            row[f"{path}_seconds"] = time.perf_counter() - start
            row.update({f"{path}_{k}": v for k, v in score(model, data, unseen, model_cfg["input_size"]).items()})
        rows.append(row)
        print(f"augmenter: repeat {repeat + 1} fold {fold + 1}: unseen camera pil {row['pil_camera']:.3f} "
              f"({row['pil_seconds']:.0f} s), batched {row['batched_camera']:.3f} ({row['batched_seconds']:.0f} s)",
              file=sys.stderr, flush=True)
        if args.out:
            args.out.write_text(json.dumps({"repeats": args.repeats, "folds": rows}, indent=1))

    def cell(key: str) -> str:
        v = np.array([r[key] for r in rows])
        return f"{v.mean():.3f} ± {v.std():.3f}"

    print(f"| finetune.augmenter | unseen, camera path | unseen, camera `bad` recall | unseen, stored | seconds a fit "
          f"({np.mean([r['n_train'] for r in rows]):.0f} frames, {cfg['epochs']} epochs) |\n|---|---:|---:|---:|---:|")
    for path in PATHS:
        print(f"| {path} | {cell(path + '_camera')} | {cell(path + '_camera_bad')} | {cell(path + '_stored')} | "
              f"{np.mean([r[path + '_seconds'] for r in rows]):.0f} |")
    diff = np.array([r["batched_camera"] - r["pil_camera"] for r in rows])
    print(f"| batched − pil (same folds) | {diff.mean():+.3f} ± {diff.std():.3f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

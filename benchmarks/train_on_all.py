"""What `finetune.train_on: all` changes, measured on frames neither model saw.

    scripts/venv.sh python benchmarks/train_on_all.py [--repeats 2] [--out train-on-all.json]

The pipeline holds a test sample out of training so that its figures measure the bundle
(`train_on: training`); `train_on: all` trains the shipped bundle on the test sample's labels too,
and its figures then come from the cross-validation. Whether that helps cannot be read off the
test sample (the second model has seen it), so this benchmark nests the two roles inside the
published camera's 299 labelled frames (pins published-frames-train and -dev):

- outer: the frames split by video time (crossval.group_seconds) into 3 folds, stratified by
  class; each fold in turn is the *unseen* frames, standing in for the line after shipping;
- inner: the other two thirds split the same way into the *training* frames (two thirds) and the
  *test sample* (one third), the share of `dev/` in the published frames;
- model `training`: the real-data recipe (params.yaml finetune.*) on the training frames;
  model `all`: the same recipe and seed on the training frames and the test sample;
- both scored on the unseen frames through the camera path (the sensor window, the firmware's
  scaling, RGB565) and on the stored frames; `training` also on its test sample, the figure the
  pipeline reports with the default.

Each repeat r uses split seed 300 + r; the training seed is the fold's, the same for both models,
so the difference (paired, printed last) is what the extra labels did. About 6 minutes a fold on
2 cores (two fits of 200 epochs through the camera path).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from label_efficiency import CLASSES, fit, real_data, score  # noqa: E402 - puts the checkout on the path

FOLDS = 3


def group_split(labels: np.ndarray, groups: list[str], seed: int, among: np.ndarray):
    """The FOLDS (rest, held) pairs of `among` (indexes into the frames), split by time group and
    stratified by class, as crossval and label_efficiency split."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for rest, held in folds.split(np.zeros(len(among)), labels[among], [groups[i] for i in among]):
        yield [int(among[i]) for i in rest], [int(among[i]) for i in held]


def summary(rows: list[dict]) -> str:
    """Mean ± standard deviation over every fold of every repeat, and the paired difference."""
    def cell(key: str) -> str:
        v = np.array([r[key] for r in rows])
        return f"{v.mean():.3f} ± {v.std():.3f}"

    def diff(a: str, b: str) -> str:
        v = np.array([r[a] - r[b] for r in rows])
        return f"{v.mean():+.3f} ± {v.std():.3f}"

    n_train = np.mean([r["n_training"] for r in rows])
    n_all = np.mean([r["n_all"] for r in rows])
    return "\n".join([
        f"| model | trained on (frames) | unseen, camera path | unseen, camera `bad` recall | unseen, stored | "
        f"its test sample, camera path |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `train_on: training` | {n_train:.0f} | {cell('training_camera')} | {cell('training_camera_bad')} | "
        f"{cell('training_stored')} | {cell('training_sample_camera')} |",
        f"| `train_on: all` | {n_all:.0f} | {cell('all_camera')} | {cell('all_camera_bad')} | "
        f"{cell('all_stored')} | (trained on it) |",
        f"| all − training (same folds) | | {diff('all_camera', 'training_camera')} | "
        f"{diff('all_camera_bad', 'training_camera_bad')} | {diff('all_stored', 'training_stored')} | |",
    ])


def folds_run(description: str):
    """What a fold-by-fold benchmark on the published frames starts from: its arguments, the
    real-data recipe (--epochs over it), the frames, and the folds an earlier run finished."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--epochs", type=int, help="instead of finetune.epochs (a quick look; the figures need the recipe's)")
    p.add_argument("--out", type=Path, help="every fold's figures, JSON (an interrupted run resumes from it)")
    args = p.parse_args()

    import torch

    from maskinspect.workflow import params as params_mod

    torch.set_num_threads(2)
    raw = params_mod.load_raw(ROOT / "params.yaml")
    params = params_mod.effective({**raw, "data": {**raw["data"], "source": "images"}})
    cfg = {**params["finetune"], "epochs": args.epochs or params["finetune"]["epochs"]}
    rows: list[dict] = json.loads(args.out.read_text())["folds"] if args.out and args.out.is_file() else []
    return args, cfg, params["model"], real_data(params), rows


def pending_folds(data, repeats: int, done: int):
    """(repeat, fold, rest, unseen) of each fold, split by group_split with seed 300 + repeat,
    but for the first `done`, which an earlier run finished."""
    everything = np.arange(len(data.labels))
    n = 0
    for repeat in range(repeats):
        for fold, (rest, unseen) in enumerate(group_split(data.labels, data.groups, 300 + repeat, everything)):
            n += 1
            if n > done:
                yield repeat, fold, rest, unseen


def main() -> int:
    args, cfg, model_cfg, data, rows = folds_run(__doc__.split("\n\n")[0])
    print(f"train_on_all: {len(data.labels)} frames, {args.repeats} repeats x {FOLDS} folds, "
          f"{len(rows)} folds done before", file=sys.stderr, flush=True)
    for repeat, fold, rest, unseen in pending_folds(data, args.repeats, len(rows)):
        t0 = time.perf_counter()
        training, sample = next(group_split(data.labels, data.groups, 400 + 10 * repeat + fold, np.array(rest)))
        seed = 10 * repeat + fold
        size = model_cfg["input_size"]
        default = fit(data, model_cfg, cfg, training, seed)
        alone, on_sample = score(default, data, unseen, size), score(default, data, sample, size)
        both = score(fit(data, model_cfg, cfg, training + sample, seed), data, unseen, size)
        row = {"repeat": repeat, "fold": fold, "n_training": len(training), "n_all": len(training) + len(sample),
               "n_unseen": len(unseen), "classes": CLASSES,
               **{f"training_{k}": v for k, v in alone.items()},
               "training_sample_camera": on_sample["camera"],
               **{f"all_{k}": v for k, v in both.items()}}
        rows.append(row)
        print(f"train_on_all: repeat {repeat + 1} fold {fold + 1}: unseen camera {alone['camera']:.3f} "
              f"(training, {len(training)}) -> {both['camera']:.3f} (all, {len(training) + len(sample)}) "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if args.out:
            args.out.write_text(json.dumps({"repeats": args.repeats, "folds": rows}, indent=1))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

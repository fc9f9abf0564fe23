"""Stage crossval: k-fold cross-validation of the fine-tuning recipe on the training frames.

The figure to choose a recipe by (the test sample only confirms). Folds are stratified by
class and grouped by video and time (frames of one video within crossval.group_frames of
each other stay in one fold: they are near-duplicates); crossval.repeats > 1 repeats it on
new splits (seeds seed, seed + 1, ...).

In:  --backbone weights, --frames shard(s) with their indexes, --train-labels,
     params.yaml (model.*, finetune.*, crossval.*, runtime.threads)
Out: --metrics JSON: per fold, mean and standard deviation (over all folds of all repeats) of
     the balanced accuracy; accuracy, per-class recall and confusion pooled over every fold
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES, cli, models
from maskinspect.atomic import write_json
from maskinspect.errors import PipelineError
from maskinspect.evaluation import labels_of, report
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled
from maskinspect.training import batched_forward, seed_everything


@cli.stage("crossval")
def main(args, params):
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    from maskinspect.finetune import finetune

    cfg, model_cfg, ft = params["crossval"], params["model"], params["finetune"]
    frames = load_shards(args.frames)
    ids, train_labels = read_labelled(args.train_labels)
    y = np.array([CLASSES.index(label) for label in train_labels])
    pos = frames.position()
    groups = [f"{frames.videos[pos[i]]}/{frames.numbers[pos[i]] // cfg['group_frames']}" for i in ids]
    if min(np.bincount(y, minlength=len(CLASSES))) < cfg["folds"]:
        raise PipelineError(f"{args.train_labels}: a class has fewer than crossval.folds ({cfg['folds']}) frames")
    images = frames.take(ids, "training frame")
    backbone = models.load_weights(args.backbone)
    folds = []
    pooled_true, pooled_pred = [], []
    # Repeats re-split with the next seeds: with a few hundred frames one split's folds differ
    # by more than the recipes being compared do.
    for repeat in range(cfg["repeats"]):
        splitter = StratifiedGroupKFold(n_splits=cfg["folds"], shuffle=True, random_state=cfg["seed"] + repeat)
        for k, (train_idx, val_idx) in enumerate(splitter.split(images, y, groups)):
            seed_everything(ft["seed"])
            model = models.build_classifier(model_cfg)
            models.load_into(model.features, backbone, str(args.backbone))
            finetune(model, images[train_idx], y[train_idx], ft, model_cfg["input_size"])
            pred = labels_of(batched_forward(model, images[val_idx], model_cfg["input_size"], 256))
            truth = [CLASSES[t] for t in y[val_idx]]
            pooled_true += truth
            pooled_pred += list(pred)
            r = report(truth, pred)
            folds.append({"repeat": repeat, "fold": k,
                          **{k2: r[k2] for k2 in ("count", "accuracy", "balanced_accuracy", "recall")}})
            print(f"crossval: repeat {repeat + 1}/{cfg['repeats']} fold {k + 1}/{cfg['folds']}: balanced accuracy "
                  f"{r['balanced_accuracy']}, recall {r['recall']}", file=sys.stderr)
    pooled = report(pooled_true, pooled_pred)  # every frame once per repeat
    bal = [f["balanced_accuracy"] for f in folds]
    write_json(args.metrics, {
        "folds": cfg["folds"],
        "repeats": cfg["repeats"],
        "balanced_accuracy_mean": round(float(np.mean(bal)), 4),
        "balanced_accuracy_std": round(float(np.std(bal)), 4),
        "pooled": {k2: pooled[k2] for k2 in ("accuracy", "balanced_accuracy", "recall", "confusion")},
        "per_fold": folds,
    })
    print(f"crossval: balanced accuracy {np.mean(bal):.4f} +- {np.std(bal):.4f} over {cfg['folds']} folds x {cfg['repeats']} repeat(s); pooled "
          f"recall {pooled['recall']}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

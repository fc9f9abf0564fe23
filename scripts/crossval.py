"""Stage crossval: k-fold cross-validation of the fine-tuning recipe on the training frames.

The figure to choose a recipe by (the test sample only confirms). Folds are stratified by
class and grouped by video and time (frames of one video within crossval.group_seconds of
each other stay in one fold: they are near-duplicates); crossval.repeats > 1 repeats it on
new splits (seeds seed, seed + 1, ...).

In:  --backbone weights, --frames shard(s) with their indexes, --camera (the labelled frames at
     the sensor's size), --train-labels,
     params.yaml (model.*, finetune.*, crossval.*, runtime.threads)
Out: --metrics JSON: per fold, mean and standard deviation (over all folds of all repeats) of
     the balanced accuracy; accuracy, per-class recall and confusion pooled over every fold;
     each on the stored frames and through the camera's input path (camera_*)
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES, cli, models
from maskinspect.atomic import write_json
from maskinspect.camera import camera_pixels
from maskinspect.errors import PipelineError
from maskinspect.evaluation import labels_of, report
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled, shown
from maskinspect.training import batched_forward, seed_everything


PUBLISHED_FPS = 30  # labelled images carry no time: their names hold source frame numbers at 30 fps


def time_groups(frames, ids, seconds: float) -> list[str]:
    """Per frame, its video and time block: frames closer in time are near-duplicates and must
    not be split between training and validation."""
    pos = frames.position()
    groups = []
    for i in ids:
        t = frames.times[pos[i]]
        t = t if t is not None else frames.numbers[pos[i]] / PUBLISHED_FPS
        groups.append(f"{frames.videos[pos[i]]}/{int(t // seconds)}")
    return groups


@cli.stage("crossval")
def main(args, params):
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    from maskinspect.finetune import finetune

    cfg, model_cfg, ft = params["crossval"], params["model"], params["finetune"]
    frames = load_shards(args.frames)
    ids, train_labels = read_labelled(args.train_labels)
    y = np.array([CLASSES.index(label) for label in train_labels])
    groups = time_groups(frames, ids, cfg["group_seconds"])
    if min(np.bincount(y, minlength=len(CLASSES))) < cfg["folds"]:
        raise PipelineError(f"{shown(args.train_labels)}: a class has fewer than crossval.folds ({cfg['folds']}) frames")
    if len(set(groups)) < cfg["folds"]:
        raise PipelineError(f"{shown(args.train_labels)}: the frames fall into {len(set(groups))} groups (one per video and "
                            f"{cfg['group_seconds']:g} s) for {cfg['folds']} folds: set crossval.folds to at most "
                            f"{len(set(groups))} or lower crossval.group_seconds")
    images = frames.take(ids, "training frame")
    backbone = models.load_weights(args.backbone)
    size = model_cfg["input_size"]
    sensor = load_shards(args.camera).take(ids, "training frame")
    through_camera = camera_pixels(sensor, size)  # what the camera feeds the model, for each frame
    folds = []
    pooled = {"stored": ([], []), "camera": ([], [])}
    # Repeats re-split with the next seeds: with a few hundred frames one split's folds differ
    # by more than the recipes being compared do.
    for repeat in range(cfg["repeats"]):
        splitter = StratifiedGroupKFold(n_splits=cfg["folds"], shuffle=True, random_state=cfg["seed"] + repeat)
        for k, (train_idx, val_idx) in enumerate(splitter.split(images, y, groups)):
            seed_everything(ft["seed"])
            model = models.build_classifier(model_cfg)
            models.load_into(model.features, backbone, str(args.backbone))
            finetune(model, images[train_idx], y[train_idx], ft, size,
                     camera=sensor[train_idx] if ft["augment"]["camera"] > 0 else None)
            truth = [CLASSES[t] for t in y[val_idx]]
            fold = {"repeat": repeat, "fold": k}
            for path, frames_in in (("stored", images[val_idx]), ("camera", through_camera[val_idx])):
                pred = labels_of(batched_forward(model, frames_in, size, 256))
                pooled[path][0].extend(truth)
                pooled[path][1].extend(pred)
                r = report(truth, pred)
                fold.update({f"{key}" if path == "stored" else f"camera_{key}": r[key]
                             for key in ("count", "accuracy", "balanced_accuracy", "recall")})
            folds.append(fold)
            print(f"crossval: repeat {repeat + 1}/{cfg['repeats']} fold {k + 1}/{cfg['folds']}: balanced accuracy "
                  f"{fold['balanced_accuracy']} (through the camera: {fold['camera_balanced_accuracy']}), "
                  f"recall {fold['recall']}", file=sys.stderr)
    summary = summarise(cfg, folds, pooled)
    write_json(args.metrics, summary)
    print(f"crossval: balanced accuracy {summary['balanced_accuracy_mean']} +- {summary['balanced_accuracy_std']} "
          f"over {cfg['folds']} folds x {cfg['repeats']} repeat(s), through the camera "
          f"{summary['camera_balanced_accuracy_mean']} +- {summary['camera_balanced_accuracy_std']}; pooled `bad` "
          f"recall {summary['pooled']['recall']['bad']}, through the camera {summary['camera_pooled']['recall']['bad']}",
          file=sys.stderr)


def summarise(cfg: dict, folds: list[dict], pooled: dict) -> dict:
    """Mean and spread over the folds, and the pooled figures (every frame once per repeat), on
    the stored frames and through the camera."""
    import numpy as np

    summary = {"folds": cfg["folds"], "repeats": cfg["repeats"], "per_fold": folds}
    for path, prefix in (("stored", ""), ("camera", "camera_")):
        bal = [f[f"{prefix}balanced_accuracy"] for f in folds]
        every = report(*pooled[path])
        summary[f"{prefix}balanced_accuracy_mean"] = round(float(np.mean(bal)), 4)
        summary[f"{prefix}balanced_accuracy_std"] = round(float(np.std(bal)), 4)
        summary["pooled" if path == "stored" else "camera_pooled"] = {
            k2: every[k2] for k2 in ("accuracy", "balanced_accuracy", "recall", "confusion")}
    return summary


if __name__ == "__main__":
    sys.exit(main())

"""Stage crossval: k-fold cross-validation of the fine-tuning recipe on the training frames.

The figure to choose a recipe by (the test sample only confirms). Folds are stratified by
class and grouped by video and time (frames of one video within crossval.group_seconds of
each other stay in one fold: they are near-duplicates); crossval.repeats > 1 repeats it on
new splits (seeds seed, seed + 1, ...).

In:  --backbone weights, --frames shard(s) with their indexes, --camera (the labelled frames at
     the sensor's size), --train-labels,
     params.yaml (model.*, finetune.*, crossval.*, runtime.threads)
Out: --metrics JSON (with too few labels of some class for the folds: "skipped", the reason, and no
     figures): per fold, mean and standard deviation (over all folds of all repeats) of
     the balanced accuracy; accuracy, per-class recall and confusion pooled over every fold;
     each on the stored frames and through the camera's input path (camera_*)
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.atomic import write_json
from maskinspect.device.camera import camera_pixels
from maskinspect.errors import PipelineError
from maskinspect.model.evaluation import labels_of, report
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled, shown
from maskinspect.model.training import batched_forward, seed_everything


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

    cfg, model_cfg, ft = params["crossval"], params["model"], params["finetune"]
    frames = load_shards(args.frames)
    ids, train_labels = read_labelled(args.train_labels)
    y = np.array([CLASSES.index(label) for label in train_labels])
    groups = time_groups(frames, ids, cfg["group_seconds"])
    counts = np.bincount(y, minlength=len(CLASSES))
    if min(counts) < cfg["folds"]:  # early rounds of labelling: not an error, the bundle is built already
        have = ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts))
        verdict = (f"No cross-validation yet: {cfg['folds']} folds need at least {cfg['folds']} labelled frames of "
                   f"each class to train on, and there are {have}. Label more (maskinspect propose adds a round).")
        write_json(args.metrics, {"folds": cfg["folds"], "repeats": cfg["repeats"], "labelled": len(ids),
                                  "skipped": verdict, "curve": {"verdict": verdict, "points": []}})
        print(f"crossval: {verdict}", file=sys.stderr)
        return
    if len(set(groups)) < cfg["folds"]:
        raise PipelineError(f"{shown(args.train_labels)}: the frames fall into {len(set(groups))} groups (one per video and "
                            f"{cfg['group_seconds']:g} s) for {cfg['folds']} folds: set crossval.folds to at most "
                            f"{len(set(groups))} or lower crossval.group_seconds")
    images = frames.take(ids, "training frame")
    backbone = models.load_weights(args.backbone)
    sensor = load_shards(args.camera).take(ids, "training frame")
    data = Folds(images, sensor, camera_pixels(sensor, model_cfg["input_size"]), y, backbone, str(args.backbone))
    folds = []
    pooled = {"stored": ([], []), "camera": ([], [])}
    # Repeats re-split with the next seeds: with a few hundred frames one split's folds differ
    # by more than the recipes being compared do.
    for repeat in range(cfg["repeats"]):
        splitter = StratifiedGroupKFold(n_splits=cfg["folds"], shuffle=True, random_state=cfg["seed"] + repeat)
        for k, (train_idx, val_idx) in enumerate(splitter.split(images, y, groups)):
            fold = {"repeat": repeat, "fold": k, **data.score(data.train(train_idx, model_cfg, ft), val_idx,
                                                              model_cfg, pooled)}
            fold["curve"] = {str(f): data.score(data.train(data.fewer(train_idx, f, repeat * 100 + k), model_cfg, ft),
                                                val_idx, model_cfg)["camera_balanced_accuracy"]
                             for f in cfg["curve"]}
            folds.append(fold)
            print(f"crossval: repeat {repeat + 1}/{cfg['repeats']} fold {k + 1}/{cfg['folds']}: balanced accuracy "
                  f"{fold['balanced_accuracy']} (through the camera: {fold['camera_balanced_accuracy']}), "
                  f"recall {fold['recall']}", file=sys.stderr)
    summary = summarise(cfg, folds, pooled)
    summary["curve"] = learning_curve(cfg, folds, len(ids))
    write_json(args.metrics, summary)
    print(f"crossval: balanced accuracy {summary['balanced_accuracy_mean']} +- {summary['balanced_accuracy_std']} "
          f"over {cfg['folds']} folds x {cfg['repeats']} repeat(s), through the camera "
          f"{summary['camera_balanced_accuracy_mean']} +- {summary['camera_balanced_accuracy_std']}; pooled `bad` "
          f"recall {summary['pooled']['recall']['bad']}, through the camera {summary['camera_pooled']['recall']['bad']}",
          file=sys.stderr)
    print(f"crossval: {summary['curve']['verdict']}", file=sys.stderr)


class Folds:
    """The training frames of the cross-validation, and how a fold trains and scores."""

    def __init__(self, images, sensor, through_camera, y, backbone, backbone_name):
        self.images, self.sensor, self.through_camera, self.y = images, sensor, through_camera, y
        self.backbone, self.backbone_name = backbone, backbone_name

    def train(self, idx, model_cfg: dict, ft: dict):
        from maskinspect.model.finetune import finetune

        seed_everything(ft["seed"])
        model = models.build_classifier(model_cfg)
        models.load_into(model.features, self.backbone, self.backbone_name)
        finetune(model, self.images[idx], self.y[idx], ft, model_cfg["input_size"],
                 camera=self.sensor[idx] if ft["augment"]["camera"] > 0 else None)
        return model

    def score(self, model, val_idx, model_cfg: dict, pooled: dict | None = None) -> dict:
        """Figures on the validation frames, stored and through the camera (pooled: kept for the total)."""
        truth = [CLASSES[t] for t in self.y[val_idx]]
        out = {}
        for path, frames_in in (("stored", self.images[val_idx]), ("camera", self.through_camera[val_idx])):
            pred = labels_of(batched_forward(model, frames_in, model_cfg["input_size"], 256))
            if pooled is not None:
                pooled[path][0].extend(truth)
                pooled[path][1].extend(pred)
            r = report(truth, pred)
            out.update({f"{key}" if path == "stored" else f"camera_{key}": r[key]
                        for key in ("count", "accuracy", "balanced_accuracy", "recall")})
        return out

    def fewer(self, idx, fraction: float, seed: int):
        """A part of a fold's training frames, every class kept in its share (at least one of each)."""
        import numpy as np

        rng = np.random.default_rng(seed)
        keep = []
        for c in range(len(CLASSES)):
            members = idx[self.y[idx] == c]
            keep += list(rng.permutation(members)[: max(1, round(fraction * len(members)))])
        return np.array(sorted(keep))


def learning_curve(cfg: dict, folds: list[dict], labelled: int) -> dict:
    """The cross-validation through the camera path against the share of the labels each fold
    trained on, and in one sentence whether more labels are likely to help: the gain from the
    largest part to all of them, against its spread over the folds (paired: the same folds)."""
    import numpy as np

    points = []
    for f in sorted(cfg["curve"]) + [1.0]:
        scores = [fold["camera_balanced_accuracy"] if f == 1.0 else fold["curve"][str(f)] for fold in folds]
        points.append({"fraction": f, "labels": round(f * labelled * (cfg["folds"] - 1) / cfg["folds"]),
                       "camera_balanced_accuracy_mean": round(float(np.mean(scores)), 4),
                       "camera_balanced_accuracy_std": round(float(np.std(scores)), 4)})
    if len(points) < 2:
        return {"points": points, "verdict": "no learning curve (crossval.curve is empty)"}
    last = cfg["curve"] and max(cfg["curve"])
    gains = np.array([fold["camera_balanced_accuracy"] - fold["curve"][str(last)] for fold in folds])
    gain, spread = float(gains.mean()), float(gains.std())
    a, b = points[-2]["labels"], points[-1]["labels"]
    if gain > max(spread / np.sqrt(len(gains)) * 2, 0.005):
        verdict = (f"More labels are likely to help: from {a} to {b} labelled frames a fold, the camera-path "
                   f"balanced accuracy rose by {gain:+.3f} (± {spread:.3f} over the folds).")
    else:
        verdict = (f"More labels are unlikely to help much: from {a} to {b} labelled frames a fold, the camera-path "
                   f"balanced accuracy moved by {gain:+.3f} (± {spread:.3f} over the folds), within its spread.")
    return {"points": points, "gain": round(gain, 4), "gain_std": round(spread, 4), "verdict": verdict}


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

"""Stage finetune: the classifier (pretrained backbone + linear head) trained on the labelled frames.

In:  --backbone weights, --frames shards, --camera (the labelled frames at the sensor's size:
     the camera-path augmentation and figure), --train-labels and --test-labels (frame_id,label),
     params.yaml (model.*, finetune.*, runtime.threads)
Out: --classifier weights (.safetensors); on the test sample: --metrics JSON (accuracy,
     balanced accuracy, per-class recall, confusion matrix; and through the camera's input
     path), --predictions CSV (a DVC confusion plot), --confusion PNG; --curve CSV per epoch
     (loss, accuracy: a DVC plot)
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.atomic import write_csv, write_json
from maskinspect.device.camera import camera_pixels
from maskinspect.errors import PipelineError
from maskinspect.model.evaluation import labels_of, report
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled, shown
from maskinspect.report.plots import confusion_matrix
from maskinspect.model.training import batched_forward, seed_everything


@cli.stage("finetune")
def main(args, params):
    import numpy as np

    from maskinspect.model.finetune import finetune

    cfg, model_cfg = params["finetune"], params["model"]
    frames = load_shards(args.frames)
    train_ids, train_labels = read_labelled(args.train_labels)
    test_ids, test_labels = read_labelled(args.test_labels)
    if not train_ids:
        raise PipelineError(f"{shown(args.train_labels)}: no labelled training frames")
    if cfg["train_on"] == "all":  # the shipped model learns from every label; the figures are then the CV's
        train_ids, train_labels = train_ids + test_ids, train_labels + test_labels
    seed_everything(cfg["seed"])  # the head's initial weights come from torch's RNG too
    model = models.build_classifier(model_cfg)
    models.load_into(model.features, models.load_weights(args.backbone), str(args.backbone))
    targets = np.array([CLASSES.index(label) for label in train_labels])
    camera = load_shards(args.camera)
    train_camera = camera.take(train_ids, "training frame") if cfg["augment"]["camera"] > 0 else None
    watched = ((frames.take(test_ids, "test frame"), np.array([CLASSES.index(label) for label in test_labels]))
               if test_ids else None)  # the test sample's curve beside the training curve, never used to choose
    result = finetune(model, frames.take(train_ids, "training frame"), targets, cfg, model_cfg["input_size"],
                      camera=train_camera, watched=watched)
    models.save_weights(args.classifier, model, {"stage": "finetune", "mode": cfg["mode"], "classes": ",".join(CLASSES)})
    write_csv(args.curve, ("epoch", "loss", "accuracy", "test_loss", "test_accuracy"),
              [(c["epoch"], f"{c['loss']:.6f}", f"{c['accuracy']:.4f}", f"{c.get('test_loss', float('nan')):.6f}",
                f"{c.get('test_accuracy', float('nan')):.4f}") for c in result.curve])

    predicted: list[str] = []
    through_camera: list[str] = []
    if test_ids:
        size = model_cfg["input_size"]
        predicted = labels_of(batched_forward(model, frames.take(test_ids, "test frame"), size, 256))
        sensor = camera.take(test_ids, "test frame")
        through_camera = labels_of(batched_forward(model, camera_pixels(sensor, size), size, 256))
    metrics = report(test_labels, predicted)
    camera_report = report(test_labels, through_camera)
    metrics["camera"] = {k: camera_report[k] for k in ("accuracy", "balanced_accuracy", "recall")}
    metrics["train_count"] = len(train_ids)
    metrics["mode"] = cfg["mode"]
    if cfg["train_on"] == "all":
        metrics["note"] = ("trained on the test sample too (finetune.train_on: all): these figures are not a "
                           "measurement; the cross-validation's are")
    write_json(args.metrics, metrics)
    write_csv(args.predictions, ("frame_id", "actual", "predicted"), zip(test_ids, test_labels, predicted))
    confusion_matrix(args.confusion, np.array(metrics["confusion"]["matrix"]), CLASSES,
                     f"float model, test sample ({len(test_ids)} frames)\n"
                     f"balanced accuracy {metrics['balanced_accuracy']}")
    recall = ", ".join(f"{k} {v}" for k, v in metrics["recall"].items())
    print(f"finetune: {cfg['mode']} on {len(train_ids)} frames ({result.device}); test: accuracy "
          f"{metrics['accuracy']}, balanced accuracy {metrics['balanced_accuracy']}, recall {recall}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

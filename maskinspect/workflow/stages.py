"""THE TABLE: every stage of the pipeline, in the order the data flows.

Each stage is a Snakemake rule, a DVC stage and `scripts/<name>.py`. Its files are named once,
by role; the command line both front ends run is `python scripts/<name>.py --params params.yaml`
followed by `--<role> <files>` for each input and output, `--<option> <value>` for each option,
and `--log logs/<name>/...`. See declare.py for what a role's value may be, and layout.py for
the names in From(...), Shards(...) and Folder(...). To add a stage: one entry here, and its
script (whose `main` takes the roles as arguments: maskinspect/workflow/runner.py).
"""
from __future__ import annotations

import math

from maskinspect.workflow.declare import Folder, From, Shards, Stage
from maskinspect.workflow.layout import CAMERA_IMAGES, CAMERA_VIDEOS, CROSSVAL, DEMO_TRUTH, EMBEDDINGS, IMAGE_LABELS, IMAGE_SHARDS, SELECTED, VIDEO_LABELS, Layout

BACKBONE = "models/backbone.safetensors"
CLASSIFIER = "models/classifier.safetensors"
ONNX = "models/classifier.onnx"
INT8 = "models/classifier_int8.tflite"
TEST_SAMPLE = "data/selection/test.csv"
TRAIN = From("train_labels", many=True)   # labels of the training frames: videos', images' or both
TEST = From("test_labels", many=True)
CAMERA = Shards("camera_shards")           # the labelled frames at the sensor's size, for the camera path
OPENMV_OPS = "maskinspect/device/openmv_tflm_ops.txt"
HARNESS = ("maskinspect/device/firmware/harness.cc", "maskinspect/device/firmware/startup.c",
           "maskinspect/device/firmware/mps2_an500.ld")

# What a cluster job asks for (mem_mb in MB, runtime in minutes), from what each stage was measured
# to take: Snakemake's benchmark: files (benchmarks/<stage>/, printed by benchmarks/pipeline.py),
# on 2 CPU cores without a GPU. Memory is MEMORY_MARGIN x the peak resident set, at least 1 GB;
# runtime TIME_MARGIN x the wall time (a slower node, a busy shared filesystem), at least 10
# minutes. Larger data than measured (more frames, more pretraining epochs) needs more: override
# in the SLURM profile. Stages marked gpu also ask for a GPU (MASKINSPECT_GPUS=0: none).
# Resources never change a result.
MEMORY_MARGIN, TIME_MARGIN = 1.5, 3.0
MEASURED = {   # stage: (peak resident MB, wall seconds); where: the demo build, or real data (the 199 published frames)
    "render_demo": (79, 19, "demo"), "extract_frames": (80, 1.1, "demo, one video"),
    "pack_images": (108, 0.8, "real"), "pretrain": (1293, 613, "demo, 60 epochs"),
    "embed": (894, 6.8, "demo"), "select_frames": (192, 3.7, "demo"), "annotate": (69, 0.5, "demo"),
    "camera_frames": (143, 3.0, "demo"), "finetune": (918, 228, "real, 200 epochs full"),
    "export_onnx": (781, 6.1, "demo"), "quantize": (1587, 25, "real"), "tflm_check": (144, 10.8, "demo"),
    "firmware_check": (1363, 17, "demo"), "bundle": (53, 0.2, "demo"), "report": (1055, 12.2, "demo"),
    "crossval": (1017, 1960, "real, 5 folds x 3 (memory: a short run)"), "compare_published": (106, 13.6, "demo test sample"),
}
GPU = {"pretrain", "embed", "finetune", "crossval"}  # they use a GPU where the node has one


def requests(name: str) -> dict:
    """The cluster request of a stage, from its measurement and the margins above."""
    peak_mb, seconds, _where = MEASURED[name]
    out = {"mem_mb": max(1000, math.ceil(peak_mb * MEMORY_MARGIN / 250) * 250),
           "runtime": max(10, math.ceil(seconds * TIME_MARGIN / 60 / 5) * 5)}
    return {**out, "gpu": 1} if name in GPU else out


STAGES: tuple[Stage, ...] = (
    Stage("render_demo", when="demo",
          doc="synthetic production-line videos and the ground truth of every frame",
          inputs={},
          outputs={"videos": From("demo_videos", many=True), "truth": DEMO_TRUTH},
          params=("demo",)),

    Stage("extract_frames", foreach="videos",
          doc="one video's frames, centre-cropped and scaled, as a shard with its index",
          inputs={"video": "{item.path}"},
          outputs={"frames": "data/frames/{item}.npy", "index": "data/frames/{item}.csv"},
          options={"name": "{item}"},
          params=("frames",)),

    Stage("pack_images", when="images",
          doc="labelled image folders (<dir>/<class>/*.jpg) as frame shards and labels",
          inputs={"train_dir": Folder("images_dir"), "test_dir": Folder("test_dir")},
          outputs={"train_frames": IMAGE_SHARDS[0], "train_index": "data/frames/images-train.csv",
                   "train_labels": IMAGE_LABELS[0],
                   "train_camera": CAMERA_IMAGES[0], "train_camera_index": "data/frames/camera-images-train.csv",
                   "test_frames": IMAGE_SHARDS[1], "test_index": "data/frames/images-test.csv",
                   "test_labels": IMAGE_LABELS[1],
                   "test_camera": CAMERA_IMAGES[1], "test_camera_index": "data/frames/camera-images-test.csv"},
          params=("frames",)),

    Stage("pretrain",
          doc="SimCLR self-supervised pretraining of the backbone on the frames, no labels",
          inputs={"frames": Shards("train_shards"), "init": From("pretrain_init", optional=True)},
          outputs={"backbone": BACKBONE, "loss": "metrics/pretrain_loss.csv"},
          params=("model", "pretrain", "runtime.threads"),
          plots={"loss": {"x": "epoch", "y": "loss", "title": "SimCLR pretraining loss"}},
          threads=True),

    Stage("embed", when="from_videos",
          doc="a 16-number embedding of every video frame from the pretrained backbone",
          inputs={"frames": Shards("video_shards"), "backbone": BACKBONE},
          outputs={"embeddings": EMBEDDINGS[0], "ids": EMBEDDINGS[1]},
          params=("model", "embed", "runtime.threads"),
          threads=True),

    Stage("select_frames", when="from_videos",
          doc="the frames worth labelling (coreset) and a test sample from time blocks kept apart",
          inputs={"embeddings": EMBEDDINGS[0], "ids": EMBEDDINGS[1],
                  "index": From("indexes", many=True), "rounds": From("rounds", many=True, optional=True)},
          outputs={"selected": SELECTED, "test_sample": TEST_SAMPLE, "map": "metrics/embedding_map.png"},
          params=("select",),
          plots={"map": {}}),

    Stage("annotate", when="from_videos",
          doc="labels of the selected and test frames; stops for a person when some are missing",
          inputs={"selected": SELECTED, "test_sample": TEST_SAMPLE, "frames": Shards("video_shards"),
                  "videos": From("video_files", many=True), "labels": From("labels", optional=True)},
          outputs={"train_labels": VIDEO_LABELS[0], "test_labels": VIDEO_LABELS[1]},
          params=("data.source", "data.labels"),
          flags=("hand_off_only",)),

    Stage("camera_frames", when="from_videos",
          doc="the labelled video frames again, at the sensor's size, for the camera's input path",
          inputs={"videos": From("video_files", many=True), "video_index": From("indexes", many=True),
                  "train_labels": VIDEO_LABELS[0], "test_labels": VIDEO_LABELS[1]},
          outputs={"frames": CAMERA_VIDEOS, "index": "data/frames/camera-videos.csv"},
          params=("frames.crop",)),

    Stage("finetune",
          doc="the classifier trained on the labelled frames, scored on the test sample",
          inputs={"backbone": BACKBONE, "frames": Shards("shards"), "camera": CAMERA, "train_labels": TRAIN,
                  "test_labels": TEST},
          outputs={"classifier": CLASSIFIER, "metrics": "metrics/finetune.json",
                   "predictions": "metrics/finetune_predictions.csv", "confusion": "metrics/finetune_confusion.png",
                   "curve": "metrics/finetune_curve.csv"},
          params=("model", "finetune", "runtime.threads"),
          plots={"curve": {"x": "epoch", "y": ["loss", "accuracy", "test_loss", "test_accuracy"],
                           "title": "fine-tuning: training batches and the test sample"},
                 "predictions": {"template": "confusion", "x": "actual", "y": "predicted",
                                 "title": "float model on the test sample"},
                 "confusion": {}},
          threads=True),

    Stage("export_onnx",
          doc="the classifier as ONNX, checked against onnxruntime",
          inputs={"classifier": CLASSIFIER, "frames": Shards("shards"), "test_labels": TEST},
          outputs={"onnx": ONNX, "metrics": "metrics/export.json"},
          params=("model", "export", "runtime.threads"),
          threads=True),

    Stage("quantize",
          doc="full-integer int8 TFLite through onnx2tf, calibrated, gated for the camera",
          inputs={"onnx": ONNX, "classifier": CLASSIFIER, "frames": Shards("shards"), "camera": CAMERA,
                  "train_labels": TRAIN, "test_labels": TEST},
          outputs={"model": INT8, "metrics": "metrics/quantize.json",
                   "predictions": "metrics/int8_predictions.csv", "confusion": "metrics/int8_confusion.png"},
          params=("model", "quantize", "runtime.threads"),
          plots={"predictions": {"template": "confusion", "x": "actual", "y": "predicted",
                                 "title": "int8 model on the test sample"},
                 "confusion": {}},
          extra_code=(OPENMV_OPS,),
          threads=True),

    Stage("tflm_check",
          doc="the int8 model in TensorFlow Lite Micro on the host: agreement, arena, work, budgets",
          inputs={"model": INT8, "camera": CAMERA, "test_labels": TEST},
          outputs={"metrics": "metrics/tflm.json"},
          params=("model.input_size", "tflm")),

    Stage("firmware_check",
          doc="the int8 model in OpenMV's own TFLite Micro on an emulated Cortex-M7: it prepares and runs "
              "on every firmware claimed, gives the host's outputs; arena and instructions measured",
          inputs={"model": INT8, "camera": CAMERA, "test_labels": TEST,
                  "libraries": From("firmware_libraries", many=True),
                  "calibration_model": From("calibration_model", optional=True)},
          outputs={"metrics": "metrics/firmware.json"},
          params=("model.input_size", "firmware", "tflm.max_arena_bytes"),
          extra_code=(OPENMV_OPS, *HARNESS)),

    Stage("bundle",
          doc="what goes on the camera: model, labels, main.py, manifest, and a zip of them",
          inputs={"model": INT8, "main": "openmv/main.py", "quantize_metrics": "metrics/quantize.json",
                  "tflm_metrics": "metrics/tflm.json", "firmware_metrics": "metrics/firmware.json"},
          outputs={"bundle_model": "dist/openmv/model.tflite", "bundle_labels": "dist/openmv/model.txt",
                   "bundle_main": "dist/openmv/main.py", "manifest": "dist/openmv/manifest.json",
                   "zip": "dist/openmv.zip", "summary": "metrics/summary.json"},
          params=("bundle",),
          metrics=("summary",),
          extra_code=(OPENMV_OPS,)),

    Stage("report",
          doc="the build report a person opens: model card, confusion matrices, the test frames it gets wrong "
              "(float, int8, camera path), the frames selected for labelling, the embedding map, the curves",
          inputs={"bundle_model": "dist/openmv/model.tflite", "manifest": "dist/openmv/manifest.json",
                  "zip": "dist/openmv.zip", "classifier": CLASSIFIER, "frames": Shards("shards"), "camera": CAMERA,
                  "train_labels": TRAIN, "test_labels": TEST, "selected": From("selected", optional=True),
                  "embeddings": From("embeddings", optional=True), "embedding_ids": From("embedding_ids", optional=True),
                  "pretrain_loss": "metrics/pretrain_loss.csv", "finetune_curve": "metrics/finetune_curve.csv",
                  "summary": "metrics/summary.json", "tflm_metrics": "metrics/tflm.json",
                  "firmware_metrics": "metrics/firmware.json",
                  "crossval": From("crossval_metrics", optional=True)},
          outputs={"report": "dist/report.html"},
          params=("data.source", "model", "finetune.train_on", "runtime.threads"),
          threads=True),

    Stage("crossval", when="real",
          doc="repeated k-fold cross-validation of the fine-tuning recipe on the training frames",
          inputs={"backbone": BACKBONE, "frames": Shards("train_shards"), "camera": CAMERA, "train_labels": TRAIN},
          outputs={"metrics": CROSSVAL},
          params=("model", "finetune", "crossval", "runtime.threads"),
          metrics=("metrics",),
          threads=True,
          later=True),  # the bundle first: the cross-validation (minutes a fold) follows it

    Stage("compare_published", when="compare",
          doc="the published 2020 model and ours on the same test frames, as the camera feeds them",
          inputs={"frames": Shards("shards"), "camera": CAMERA, "test_labels": TEST, "ours": "dist/openmv/model.tflite",
                  "published": From("published_model"), "tflm_metrics": "metrics/tflm.json"},
          outputs={"metrics": "metrics/published_comparison.json", "table": "metrics/published_comparison.md"},
          params=("compare",),
          metrics=("metrics",)),
)

BY_NAME = {st.name: st for st in STAGES}

# What a release holds, as DVC artifacts (dvc.yaml `artifacts:`): GTO registers their versions
# (`gto register mask-classifier --version v1.0.0`: the git tag mask-classifier@v1.0.0) and
# stages (`gto assign ... --stage prod`), and `dvc artifacts get REPO NAME --rev v1.0.0` or
# `--stage prod` fetches the file from the remote without building anything.
ARTIFACTS = {
    "mask-classifier": {"path": "dist/openmv/model.tflite", "type": "model",
                        "desc": "int8 ResNet-9 (bad / good / no_mask) for OpenMV's ml module, firmware 4.5.6+",
                        "labels": ["openmv", "tflite", "int8", "cortex-m7"]},
    "openmv-bundle": {"path": "dist/openmv.zip", "type": "model",
                      "desc": "what goes on the camera: model.tflite, model.txt, main.py, manifest.json",
                      "labels": ["openmv", "bundle"]},
}


def stages(lay: Layout) -> list[Stage]:
    """The stages these params build, in the order the data flows."""
    return [st for st in STAGES if getattr(lay, st.when)]


def graph(params: dict, root) -> "Graph":
    """The graph these params (as written in params.yaml) build in the checkout at root."""
    from maskinspect.workflow.declare import Graph
    from maskinspect.workflow.layout import layout

    lay = layout(params, root)
    return Graph(stages(lay), lay)

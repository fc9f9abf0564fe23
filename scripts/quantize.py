"""Stage quantize: full-integer int8 TFLite through onnx2tf, hermetic and gated.

In:  --onnx model, --classifier float weights (for the float figures), --frames shards,
     --camera (the labelled frames at the sensor's size), --train-labels (calibration: a fixed
     sample spread evenly over the training frames in label order, that reaches pixel values 0
     and 255), --test-labels, params.yaml (model.*, quantize.*)
Out: --model int8 .tflite (int8 input and output, convolution weights per channel, the dense
     head's per tensor); on the test sample --metrics JSON: accuracy, balanced accuracy and
     per-class recall of the float model, of the int8 model on the stored frames (the host's
     figure) and of the int8 model through the camera's input path (what the camera gives),
     both int8 figures in TFLite Micro, the camera's interpreter,
     the drops between them; --predictions CSV (a DVC confusion plot), --confusion PNG
Fails when a tensor on the data path is not int8, an op is outside OpenMV's resolver, or the
input scale is not 1/255 / zero point not -128. No network access (enforced).
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.model import models, tflite_graph
from maskinspect.atomic import atomic_path, write_csv, write_json
from maskinspect.model.convert import calibration_sample, convert, pin_input_range
from maskinspect.errors import PipelineError
from maskinspect.model.evaluation import labels_of, report
from maskinspect.data.frames import load_shards
from maskinspect.device.gates import check_gates
from maskinspect.data.labels import read_labelled, shown
from maskinspect.report.plots import confusion_matrix
from maskinspect.device.camera import camera_input
from maskinspect.device.runtime import host_input, read_model, smallest_arena, tflm_scores
from maskinspect.model.training import batched_forward, to_input


def calibration_frames(frames, train_ids, count, size, where):
    """A fixed sample of training frames spread over the labels file, NHWC in [0, 1], with the
    input range pinned to exactly 0 and 1 (what the firmware's pixel - 128 needs)."""
    position = frames.position()
    order = [position[i] for i in train_ids if i in position]
    if not order:
        raise PipelineError(f"{shown(where)}: no training frames to calibrate the int8 model with")
    pick = calibration_sample(len(order), count)
    calibration = to_input(frames.rows([order[i] for i in pick]), size).permute(0, 2, 3, 1).numpy()
    return calibration, pin_input_range(calibration)


@cli.stage("quantize")
def main(args, params):
    import numpy as np

    cfg, model_cfg = params["quantize"], params["model"]
    size = model_cfg["input_size"]
    frames = load_shards(args.frames)
    train_ids, _ = read_labelled(args.train_labels)
    test_ids, test_labels = read_labelled(args.test_labels)
    if not test_ids:
        raise PipelineError(f"{shown(args.test_labels)}: no test frames; the int8 model could not be judged")
    calibration, pinned = calibration_frames(frames, train_ids, cfg["calibration_frames"], size, args.train_labels)

    model_bytes = convert(args.onnx, calibration, params["runtime"]["threads"])
    with atomic_path(args.model, suffix=".tflite") as tmp:  # only a model that passes the gates lands
        tmp.write_bytes(model_bytes)
        graph = tflite_graph.read(tmp)
        check_gates(graph)

    test_images = frames.take(test_ids, "test frame")
    model = models.build_classifier(model_cfg)
    models.load_into(model, models.load_weights(args.classifier), str(args.classifier))
    float_pred = labels_of(batched_forward(model, test_images, size, 256))
    arena = smallest_arena(read_model(args.model))
    int8_pred = labels_of(tflm_scores(args.model, host_input(test_images, size), arena))
    sensor = load_shards(args.camera).take(test_ids, "test frame")
    camera_pred = labels_of(tflm_scores(args.model, camera_input(sensor, size), arena))
    float_report, int8_report = report(test_labels, float_pred), report(test_labels, int8_pred)
    camera_report = report(test_labels, camera_pred)

    def drop(key, a=float_report, b=int8_report):
        a, b = a[key], b[key]
        return None if a is None or b is None else round(a - b, 4)

    inp, out = graph.input(), graph.output()
    metrics = {
        "float": {k: float_report[k] for k in ("accuracy", "balanced_accuracy", "recall")},
        "int8": {k: int8_report[k] for k in ("accuracy", "balanced_accuracy", "recall", "confusion")},
        "camera": {k: camera_report[k] for k in ("accuracy", "balanced_accuracy", "recall", "confusion")},
        "drop": {"accuracy": drop("accuracy"), "balanced_accuracy": drop("balanced_accuracy")},
        "camera_gap": {"balanced_accuracy": drop("balanced_accuracy", int8_report, camera_report)},
        "test_count": len(test_ids),
        "calibration": {"frames": len(calibration), "pinned": pinned},
        "model_bytes": graph.size,
        "ops": graph.op_names,
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale[0], "zero_point": inp.zero_point[0]},
        "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scale[0], "zero_point": out.zero_point[0]},
    }
    write_json(args.metrics, metrics)
    write_csv(args.predictions, ("frame_id", "actual", "predicted"), zip(test_ids, test_labels, int8_pred))
    confusion_matrix(args.confusion, np.array(int8_report["confusion"]["matrix"]), CLASSES,
                     f"int8 model (TFLite Micro), test sample ({len(test_ids)} frames)\n"
                     f"balanced accuracy {int8_report['balanced_accuracy']}")
    print(f"quantize: {graph.size} bytes, ops {', '.join(graph.op_names)}; input scale {inp.scale[0]:.8f} zero point "
          f"{inp.zero_point[0]}; balanced accuracy float {float_report['balanced_accuracy']} -> int8 "
          f"{int8_report['balanced_accuracy']} -> through the camera's input path "
          f"{camera_report['balanced_accuracy']}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

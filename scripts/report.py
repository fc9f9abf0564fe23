"""Stage report: the build report, one HTML page a person opens (dist/report.html).

In:  the bundle (--bundle-model, --manifest, --zip), --classifier (float weights), the frame
     --frames and sensor-window --camera shards, --train-labels / --test-labels, the selection
     (--selected, --embeddings, --embedding-ids; videos only), the training curves
     (--pretrain-loss, --finetune-curve), --summary, --tflm-metrics, --firmware-metrics
Out: --report: a self-contained page: the model card, the headline figures, confusion matrices
     (float, int8, camera path), the test frames the model gets wrong (true label; prediction and
     confidence of the float model, the int8 model and the int8 model through the camera's input
     path), the frames selected for labelling in coreset order, the embedding map with
     thumbnails, and the training curves.
"""
from __future__ import annotations

import csv
import json
import sys

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.report import page as rp
from maskinspect.atomic import write_text
from maskinspect.device.bundle import sha256
from maskinspect.device.camera import camera_input, camera_pixels
from maskinspect.data.frames import load_shards
from maskinspect.data.labels import read_labelled
from maskinspect.device.runtime import host_input, tflm_scores
from maskinspect.model.training import batched_forward

WRONG_SHOWN = 120   # at most this many misclassified test frames (the worst first)
MAP_THUMBS = 24     # thumbnails drawn on the embedding map


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_card(args, manifest: dict, summary: dict, firmware: dict, tflm: dict) -> str:
    lat, inp = firmware["latency"], manifest["input"]
    calibrated = (f"; {lat['ms_calibrated']} ms calibrated on the 2020 model ({lat['calibration']['measured_ms']} ms "
                  f"on the board, {lat['calibration']['cpi']} cycles per instruction)" if "ms_calibrated" in lat else "")
    rows = [
        ("model bytes", f"{summary['model_bytes']:,} (budget {tflm['budget']['max_model_bytes']:,})"),
        ("tensor arena", f"{firmware['arena_bytes']:,} B, measured with the firmware's own TFLite Micro"),
        ("work", f"{summary['mops']} MOps (2 x MACs); {firmware['instructions'] / 1e6:.2f} M instructions an "
                 f"inference on the emulated Cortex-M7"),
        ("latency estimate", f"{lat['ms_band'][0]}-{lat['ms_band'][1]} ms at {lat['cpu_mhz']} MHz, assuming "
                             f"{lat['cpi_band'][0]}-{lat['cpi_band'][1]} cycles per instruction{calibrated}"),
        ("firmware", f"verified on {', '.join(manifest['firmware']['verified'])}; minimum "
                     f"{manifest['firmware']['minimum']} ({manifest['firmware']['board']}, `ml` module)"),
        ("input", f"{inp['dtype']} {inp['shape']} {inp['layout']}, scale {inp['scale']:.8f}, zero point "
                  f"{inp['zero_point']} (the firmware feeds pixel - 128)"),
        ("labels", ", ".join(manifest["labels"])),
        ("bundle", f"dist/openmv.zip sha256 <code>{sha256(args.zip.read_bytes())}</code>"),
        ("model.tflite", f"sha256 <code>{manifest['files']['model.tflite']['sha256']}</code>"),
        ("source", f"git {manifest['source']['revision']}{' (with uncommitted changes)' if manifest['source']['dirty'] else ''}: "
                   f"the newest commit that changed the code, settings or pinned inputs the bundle is built from; "
                   f"a later commit that changes none of them (results, docs) builds these same bytes, so this "
                   f"revision can be older than the checkout's"),
    ]
    return rp.table(["", "this build"], [(f"<b>{rp.esc(k)}</b>", v) for k, v in rows])


def test_predictions(args, params, ids, arena: int):
    """Each test frame's prediction three ways: float model, int8 model, int8 through the camera
    (both int8 in TFLite Micro, in the arena tflm_check found)."""
    size = params["model"]["input_size"]
    frames = load_shards(args.frames).take(ids, "test frame")
    sensor = load_shards(args.camera).take(ids, "test frame")
    model = models.build_classifier(params["model"])
    models.load_into(model, models.load_weights(args.classifier), str(args.classifier))
    views = {"float": rp.predictions(batched_forward(model, frames, size, 256), CLASSES),
             "int8": rp.predictions(tflm_scores(args.bundle_model, host_input(frames, size), arena), CLASSES),
             "camera path": rp.predictions(tflm_scores(args.bundle_model, camera_input(sensor, size), arena), CLASSES)}
    return frames, camera_pixels(sensor, size), views


def wrong_frames(ids, labels, frames, camera, views) -> str:
    wrong = [i for i in range(len(ids)) if any(v[i].label != labels[i] for v in views.values())]
    if not wrong:
        return "<p>Every test frame is right, three ways (float, int8, camera path).</p>"
    wrong.sort(key=lambda i: -max(v[i].confidence for v in views.values() if v[i].label != labels[i]))
    cards = []
    for i in wrong[:WRONG_SHOWN]:
        lines = "".join(f'<br><span class="{"wrong" if p[i].label != labels[i] else ""}">{rp.esc(name)}: '
                        f"{rp.esc(p[i].label)} {p[i].confidence:.2f}</span>" for name, p in views.items())
        colour = rp.CLASS_COLOURS[labels[i]]
        cards.append(f'<div class="card">{rp.thumb(frames[i], "stored frame", colour, "the stored frame")}'
                     f'{rp.thumb(camera[i], "as the camera feeds it", colour, "what the camera gives the model")}'
                     f"<p><b>{rp.esc(ids[i])}</b>, true: {rp.esc(labels[i])}{lines}</p></div>")
    more = f"<p class='note'>{len(wrong) - WRONG_SHOWN} more not shown.</p>" if len(wrong) > WRONG_SHOWN else ""
    return (f"<p>{len(wrong)} of {len(ids)} test frames wrong in at least one of the three ways, the most confident "
            f"mistakes first; the border is the true class.</p>"
            + "".join(cards) + more)


def selection_section(args, labels_of: dict) -> str:
    if not args.selected:
        return "<p>Labelled image folders: every frame was labelled, none selected.</p>"
    rows = sorted(_csv(args.selected), key=lambda r: int(r["rank"]))
    frames = load_shards(args.frames).take([r["frame_id"] for r in rows], "selected frame")
    thumbs = [rp.thumb(f, f"#{r['rank']} {rp.esc(r['frame_id'])}<br>{rp.esc(labels_of.get(r['frame_id'], 'not labelled'))}",
                       rp.CLASS_COLOURS.get(labels_of.get(r["frame_id"]), "#999"), r["frame_id"])
              for r, f in zip(rows, frames)]
    return (f"<p>{len(rows)} frames, most informative first (the coreset's order: each the frame farthest from "
            f"those before it in the embedding); border: the label given.</p>" + "".join(thumbs))


def map_section(args, labels_of: dict, test_ids: set) -> str:
    import numpy as np

    from maskinspect.data.selection import k_center_greedy, pca_2d

    if not args.embeddings:
        return "<p>Labelled image folders: no embedding map (the selection works on video frames).</p>"
    ids = [r["frame_id"] for r in _csv(args.embedding_ids)]
    selected = {r["frame_id"] for r in _csv(args.selected)}
    xy = pca_2d(np.load(args.embeddings))
    roles = ["selected" if f in selected else "test" if f in test_ids else "other" for f in ids]
    # thumbnails for a sample spread over the map (the farthest-point order of the 2-D positions)
    sample = sorted(k_center_greedy(xy, MAP_THUMBS, 0)) if len(xy) else []
    frames = load_shards(args.frames).take([ids[i] for i in sample], "embedded frame")
    return (f"<p>{len(ids)} frames at their embedding's first two principal components: colour the class (grey: "
            f"not labelled), shape the role; thumbnails of {len(sample)} frames spread over the map.</p>"
            + rp.embedding_map(xy, [labels_of.get(f) for f in ids], roles, dict(zip(sample, frames))))


def curves_section(args) -> str:
    import numpy as np

    out = []
    pre = _csv(args.pretrain_loss)
    if pre:
        out.append(rp.curve_figure({"loss": (np.array([int(r["epoch"]) for r in pre]),
                                             np.array([float(r["loss"]) for r in pre]))},
                                   "SimCLR pretraining loss", "epoch"))
    else:
        out.append("<p>No pretraining in this build (pretrain.epochs is 0: the checkpoint is used as it is).</p>")
    ft = _csv(args.finetune_curve)
    epochs = np.array([int(r["epoch"]) for r in ft])

    def series(keys):
        return {name: (epochs, np.array([float(r[k]) for r in ft])) for k, name in keys if ft and k in ft[0]}

    out.append(rp.curve_figure(series((("loss", "training batches"), ("test_loss", "test sample"))),
                               "fine-tuning: loss", "epoch"))
    out.append(rp.curve_figure(series((("accuracy", "training batches"), ("test_accuracy", "test sample"))),
                               "fine-tuning: accuracy", "epoch"))
    out.append("<p class='note'>Training batches are augmented; the test sample is scored as it is, after each "
               "epoch, and never used to choose anything.</p>")
    return "".join(out)


def trained_on_test_note(args) -> str:
    """With finetune.train_on: all the bundle learned the test sample too, so its figures there
    measure nothing: say so above them, with the cross-validation's figures where there are any."""
    cv = json.loads(args.crossval.read_text()) if args.crossval and args.crossval.is_file() else {}
    measured = (f" The cross-validation of the recipe (metrics/crossval.json) measured {cv['camera_balanced_accuracy_mean']:.3f}"
                f" ± {cv['camera_balanced_accuracy_std']:.3f} balanced accuracy through the camera path."
                if "camera_balanced_accuracy_mean" in cv else
                " The cross-validation (metrics/crossval.json) measures the recipe.")
    return ("<p class='note'><b>The bundle was trained on the test sample too (finetune.train_on: all): the test "
            "sample's figures below do not measure it.</b>" + rp.esc(measured) + "</p>")


def learning_curve_section(args) -> str:
    """The cross-validation through the camera path against the labels a fold trains on."""
    import numpy as np

    if not args.crossval:
        return ("<p>No cross-validation in this build (the demo): on your own footage the report shows here how "
                "the cross-validated accuracy grows with your labels, and whether more are likely to help.</p>")
    curve = json.loads(args.crossval.read_text()).get("curve") or {}
    points = curve.get("points") or []
    if len(points) < 2:
        return f"<p>{rp.esc(curve.get('verdict', 'no learning curve'))}</p>"
    x = np.array([p["labels"] for p in points])
    y = np.array([p["camera_balanced_accuracy_mean"] for p in points])
    err = np.array([p["camera_balanced_accuracy_std"] for p in points])
    rows = [(p["labels"], f"{p['camera_balanced_accuracy_mean']:.3f} ± {p['camera_balanced_accuracy_std']:.3f}")
            for p in points]
    return (f"<p><b>{rp.esc(curve['verdict'])}</b></p>"
            + rp.curve_figure({"cross-validation, camera path": (x, y), "- spread": (x, y - err),
                               "+ spread": (x, y + err)}, "balanced accuracy against labels a fold trains on",
                              "labelled frames a fold trains on")
            + rp.table(["labels a fold trains on", "balanced accuracy, camera path (mean ± std over folds)"], rows))


@cli.stage("report")
def main(args, params):
    manifest, summary = json.loads(args.manifest.read_text()), json.loads(args.summary.read_text())
    firmware, tflm = json.loads(args.firmware_metrics.read_text()), json.loads(args.tflm_metrics.read_text())
    ids, labels = read_labelled(args.test_labels)
    train_ids, train_labels = read_labelled(args.train_labels)
    frames, camera, views = test_predictions(args, params, ids, tflm["arena_bytes"])
    headline = rp.headline(summary)
    if params["finetune"]["train_on"] == "all":
        headline = trained_on_test_note(args) + headline
    confusions = "".join(rp.confusion_table(labels, [p.label for p in v], CLASSES, f"{name} ({len(ids)} test frames)")
                         for name, v in views.items())
    sections = [
        ("Model card", model_card(args, manifest, summary, firmware, tflm)),
        ("Headline figures", headline),
        ("Confusion matrices: test sample", confusions),
        ("Test frames the model gets wrong", wrong_frames(ids, labels, frames, camera, views)),
        ("Frames selected for labelling", selection_section(args, dict(zip(train_ids + ids, train_labels + labels)))),
        ("Embedding map", map_section(args, dict(zip(train_ids + ids, train_labels + labels)), set(ids))),
        ("Training curves", curves_section(args)),
        ("Your learning curve", learning_curve_section(args)),
    ]
    write_text(args.report, rp.page(f"maskinspect build report ({params['data']['source']} data)", sections))
    print(f"report: {args.report}: {len(ids)} test frames, open it in a browser", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

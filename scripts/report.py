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

from maskinspect import CLASSES, cli, models
from maskinspect import report as rp
from maskinspect.atomic import write_text
from maskinspect.bundle import sha256
from maskinspect.camera import camera_input, camera_pixels
from maskinspect.frames import load_shards
from maskinspect.labels import read_labelled
from maskinspect.runtime import host_input, tflm_scores
from maskinspect.training import batched_forward

WRONG_SHOWN = 120   # at most this many misclassified test frames (the worst first)
MAP_OTHERS = 240    # frames neither selected nor in the test sample, spread evenly over the map


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
        ("source", f"git {manifest['source']['revision']}{' (with uncommitted changes)' if manifest['source']['dirty'] else ''}"),
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
        caption = f"<b>{rp.esc(ids[i])}</b><br>true: {rp.esc(labels[i])}{lines}"
        cards.append(f'<div class="card">{rp.thumb(frames[i], "stored frame", rp.CLASS_COLOURS[labels[i]])}'
                     f'{rp.thumb(camera[i], caption, rp.CLASS_COLOURS[labels[i]], "as the camera feeds it")}</div>')
    more = f"<p class='note'>{len(wrong) - WRONG_SHOWN} more not shown.</p>" if len(wrong) > WRONG_SHOWN else ""
    return (f"<p>{len(wrong)} of {len(ids)} test frames wrong in at least one of the three ways, the most confident "
            f"mistakes first. Left: the stored frame; right: the pixels the camera gives the model.</p>"
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


def map_section(args, test_ids: set) -> str:
    import numpy as np

    from maskinspect.selection import pca_2d

    if not args.embeddings:
        return "<p>Labelled image folders: no embedding map (the selection works on video frames).</p>"
    ids = [r["frame_id"] for r in _csv(args.embedding_ids)]
    selected = {r["frame_id"] for r in _csv(args.selected)}
    xy = pca_2d(np.load(args.embeddings))
    roles = ["selected" if f in selected else "test" if f in test_ids else "other" for f in ids]
    others = [i for i, r in enumerate(roles) if r == "other"]
    spread = [others[j] for j in np.linspace(0, len(others) - 1, min(MAP_OTHERS, len(others))).astype(int)]
    keep = sorted({i for i, r in enumerate(roles) if r != "other"} | set(spread))
    frames = load_shards(args.frames).take([ids[i] for i in keep], "embedded frame")
    return ("<p>Each frame at its embedding's first two principal components; border: red selected for labelling, "
            f"blue test sample, grey other ({len(others)} others, {min(MAP_OTHERS, len(others))} shown).</p>"
            + rp.embedding_map(xy[keep], frames, [roles[i] for i in keep], [ids[i] for i in keep]))


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
    out.append(rp.curve_figure({k: (epochs, np.array([float(r[k]) for r in ft])) for k in ("loss", "accuracy")},
                               "fine-tuning (training frames)", "epoch"))
    return "".join(out)


@cli.stage("report")
def main(args, params):
    manifest, summary = json.loads(args.manifest.read_text()), json.loads(args.summary.read_text())
    firmware, tflm = json.loads(args.firmware_metrics.read_text()), json.loads(args.tflm_metrics.read_text())
    ids, labels = read_labelled(args.test_labels)
    train_ids, train_labels = read_labelled(args.train_labels)
    frames, camera, views = test_predictions(args, params, ids, tflm["arena_bytes"])
    headline = rp.table(list(summary), [[rp.esc(v) for v in summary.values()]])
    confusions = "".join(rp.confusion_table(labels, [p.label for p in v], CLASSES, f"{name} ({len(ids)} test frames)")
                         for name, v in views.items())
    sections = [
        ("Model card", model_card(args, manifest, summary, firmware, tflm)),
        ("Headline figures (metrics/summary.json)", headline),
        ("Confusion matrices: test sample", confusions),
        ("Test frames the model gets wrong", wrong_frames(ids, labels, frames, camera, views)),
        ("Frames selected for labelling", selection_section(args, dict(zip(train_ids + ids, train_labels + labels)))),
        ("Embedding map", map_section(args, set(ids))),
        ("Training curves", curves_section(args)),
    ]
    write_text(args.report, rp.page(f"maskinspect build report ({params['data']['source']} data)", sections))
    print(f"report: {args.report}: {len(ids)} test frames, open it in a browser", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

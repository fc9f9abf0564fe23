"""Stage annotate: labels for the selected (training) and test frames — the hand-off to a person.

In:  --selected and --test frame lists, frame shards (--frames, with their .csv indexes),
     --labels: a CSV (frame_id,label) or labelled folders <dir>/<class>/<frame_id>.<ext>.
     With demo data the generator's ground truth is that CSV.
Out: --train and --test-out CSVs (frame_id,label).
When frames lack labels, it writes them for a person to label, beside --train:
to_label/<frame_id>.png and to_label.csv (fill in the label column, then save it as the
labels file or add its rows to it), and fails with one line saying how many and where.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from maskinspect import CLASSES, cli, params as params_mod
from maskinspect.atomic import atomic_path, write_csv
from maskinspect.errors import PipelineError
from maskinspect.frames import load_shards
from maskinspect.labels import FrameRanges, check, read_labelled, read_labels


def export_to_label(folder: Path, table: Path, ids: list[str], images: np.ndarray) -> None:
    """Frames for a person: PNGs enlarged 4x (pixel for pixel), and a CSV to fill in."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for fid, img in zip(ids, images):
            pil = Image.fromarray(np.asarray(img))
            pil.resize((pil.width * 4, pil.height * 4), Image.NEAREST).save(tmp / f"{fid}.png")
    write_csv(table, ("frame_id", "label"), [(fid, "") for fid in ids])


@cli.stage("annotate")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--selected", required=True, type=Path)
    p.add_argument("--test", required=True, type=Path)
    p.add_argument("--frames", nargs="+", required=True, type=Path)
    p.add_argument("--labels", required=True, type=Path)
    p.add_argument("--train-out", required=True, type=Path)
    p.add_argument("--test-out", required=True, type=Path)
    args = p.parse_args(argv)
    params_mod.load(args.params)

    frames = load_shards(args.frames)
    ranges = FrameRanges([{"frame_id": i, "video": v, "frame": n}
                          for i, v, n in zip(frames.ids, frames.videos, frames.numbers)])
    labels = check(read_labels(args.labels), ranges)
    selected, test = read_labelled(args.selected)[0], read_labelled(args.test)[0]

    in_selected = set(selected)
    wanted = selected + [t for t in test if t not in in_selected]
    missing = [fid for fid in wanted if fid not in labels]
    if missing:
        folder = args.train_out.parent / "to_label"
        table = args.train_out.parent / "to_label.csv"
        export_to_label(folder, table, missing, frames.take(missing))
        raise PipelineError(f"{len(missing)} of {len(wanted)} frames lack labels: label the frames in {folder}/ "
                            f"by filling in {table} (or sorting the images into {args.labels}/<class>/ folders) "
                            f"and save the labels as {args.labels}")
    write_csv(args.train_out, ("frame_id", "label"), [(fid, labels[fid]) for fid in selected])
    write_csv(args.test_out, ("frame_id", "label"), [(fid, labels[fid]) for fid in test])

    def mix(ids):
        counts = {c: 0 for c in CLASSES}
        for fid in ids:
            counts[labels[fid]] += 1
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    print(f"annotate: train {len(selected)} ({mix(selected)}); test {len(test)} ({mix(test)})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""Stage annotate: labels for the selected (training) and test frames; the hand-off to a person.

In:  --selected and --test-sample frame lists, --frames shards, --labels: a CSV
     (frame_id,label) or labelled folders <dir>/<class>/<frame_id>.<ext>. With demo data the
     generator's ground truth is that CSV.
Out: --train-labels and --test-labels CSVs (frame_id,label).
When frames lack labels, it writes them for a person to label, beside --train-labels:
to_label/<frame_id>.png and to_label.csv (fill in the label column, then save it as the
labels file or add its rows to it), and fails with one line saying how many and where.
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES, cli
from maskinspect.atomic import kept_on_failure, write_csv
from maskinspect.errors import PipelineError
from maskinspect.frames import load_shards
from maskinspect.labels import FrameRanges, check, export_to_label, read_labelled, read_labels


@cli.stage("annotate")
def main(args, params):
    frames = load_shards(args.frames)
    ranges = FrameRanges([{"frame_id": i, "video": v, "frame": n}
                          for i, v, n in zip(frames.ids, frames.videos, frames.numbers)])
    labels = check(read_labels(args.labels), ranges) if args.labels else {}
    selected, test = read_labelled(args.selected)[0], read_labelled(args.test_sample)[0]

    in_selected = set(selected)
    wanted = selected + [t for t in test if t not in in_selected]
    missing = [fid for fid in wanted if fid not in labels]
    if missing:
        folder = args.train_labels.parent / "to_label"
        table = args.train_labels.parent / "to_label.csv"
        with kept_on_failure():
            export_to_label(folder, table, missing, frames.take(missing))
        raise PipelineError(f"{len(missing)} of {len(wanted)} frames lack labels: label the frames in {folder}/ "
                            f"by filling in {table} (or sorting the images into {args.labels}/<class>/ folders) "
                            f"and save the labels as {args.labels}")
    write_csv(args.train_labels, ("frame_id", "label"), [(fid, labels[fid]) for fid in selected])
    write_csv(args.test_labels, ("frame_id", "label"), [(fid, labels[fid]) for fid in test])

    def mix(ids):
        counts = {c: 0 for c in CLASSES}
        for fid in ids:
            counts[labels[fid]] += 1
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    print(f"annotate: train {len(selected)} ({mix(selected)}); test {len(test)} ({mix(test)})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

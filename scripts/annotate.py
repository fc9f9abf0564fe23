"""Stage annotate: labels for the selected (training) and test frames; the hand-off to a person.

In:  --selected and --test-sample frame lists, --frames shards, --videos (to show a frame to
     be labelled large), --labels: a CSV (frame_id,label), a Label Studio export or labelled
     folders <dir>/<class>/<frame_id>.<ext>. With demo data the generator's ground truth is that CSV.
Out: --train-labels and --test-labels CSVs (frame_id,label).
When frames lack labels, it writes the hand-off beside --train-labels (maskinspect/data/handoff.py:
to_label/ for the labelling page and Label Studio, to_label.csv to fill in by hand) and stops with
a short screen: how many, and the command that serves the labelling page (exit 3, a normal step:
the build goes on once they are labelled). --hand-off-only writes the hand-off and exits 0 (the
Snakemake front end stops there itself).
"""
from __future__ import annotations

import sys

from maskinspect import CLASSES
from maskinspect.workflow import runner as cli
from maskinspect.atomic import kept_on_failure, write_csv
from maskinspect.errors import LabelsNeeded, PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.data import handoff
from maskinspect.device.camera import SENSOR
from maskinspect.data.labels import FrameRanges, check, read_labelled, read_labels
from maskinspect.data.video import frames_by_number


@cli.stage("annotate")
def main(args, params):
    frames = load_shards(args.frames)
    ranges = FrameRanges([{"frame_id": i, "video": v, "frame": n}
                          for i, v, n in zip(frames.ids, frames.videos, frames.numbers)])
    labels = check(read_labels(args.labels), ranges) if args.labels else {}
    selected, test = read_labelled(args.selected)[0], read_labelled(args.test_sample)[0]

    in_selected = set(selected)
    chosen = handoff.wanted(selected, test)
    missing = [fid for fid in chosen if fid not in labels]
    if missing:
        folder = args.train_labels.parent / "to_label"
        table = args.train_labels.parent / "to_label.csv"
        with kept_on_failure():
            hand_off(args, params, frames, missing, in_selected, folder, table)
        if args.hand_off_only:
            return
        raise LabelsNeeded(handoff.screen(missing, set(test), len(chosen), labels_file(args, params)))
    if args.hand_off_only:
        return
    write_csv(args.train_labels, ("frame_id", "label"), [(fid, labels[fid]) for fid in selected])
    write_csv(args.test_labels, ("frame_id", "label"), [(fid, labels[fid]) for fid in test])

    def mix(ids):
        counts = {c: 0 for c in CLASSES}
        for fid in ids:
            counts[labels[fid]] += 1
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    print(f"annotate: train {len(selected)} ({mix(selected)}); test {len(test)} ({mix(test)})", file=sys.stderr)


def hand_off(args, params, frames, missing, in_selected, folder, table) -> None:
    """The frames that lack labels, in labelling order, large and with their neighbours."""
    pos = frames.position()
    videos = {p.stem: p for p in args.videos}
    rows, context, per_video = [], {}, {}
    for order, fid in enumerate(missing):
        i = pos[fid]
        video = frames.videos[i]
        time = frames.times[i]
        rows.append({"frame_id": fid, "video": video, "frame": frames.numbers[i],
                     "time": None if time is None else round(float(time), 2),
                     "set": "train" if fid in in_selected else "test", "order": order})
        near = [j for j in range(i - handoff.CONTEXT, i + handoff.CONTEXT + 1)
                if 0 <= j < len(frames) and frames.videos[j] == video]
        context[fid] = handoff.context_strip(list(frames.rows(near)), near.index(i))
        per_video.setdefault(video, []).append(fid)
    large = {}
    for video, fids in per_video.items():
        if video not in videos:
            raise PipelineError(f"video {video} of frame {fids[0]} is not among --videos")
        got = frames_by_number(videos[video], [frames.numbers[pos[f]] for f in fids], SENSOR, params["frames"]["crop"])
        large.update({f: got[frames.numbers[pos[f]]] for f in fids})
    handoff.write(folder, table, labels_file(args, params), rows, large, context, url_root=args.params.resolve().parent)


def labels_file(args, params) -> str:
    """Where the answers go: the labels file given, or data.labels before it exists."""
    return str(args.labels) if args.labels else params["data"]["labels"]


if __name__ == "__main__":
    sys.exit(main())

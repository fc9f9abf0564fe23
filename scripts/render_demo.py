"""Stage render_demo: synthetic production-line videos and their per-frame ground truth.

In:  params.yaml (demo.*)
Out: <videos_dir>/demo-NN.mp4 (H.264), <truth> CSV: frame_id,label,video,frame,time,coverage,defects_visible
The truth CSV stands in for a human annotator in the annotate stage.
"""
from __future__ import annotations

import sys
from pathlib import Path

from maskinspect import cli, params as params_mod
from maskinspect.atomic import write_csv
from maskinspect.demo import DemoSpec, VideoRenderer, video_names
from maskinspect.frames import frame_id
from maskinspect.video import encode_h264

TRUTH_HEADER = ("frame_id", "label", "video", "frame", "time", "coverage", "defects_visible")


@cli.stage("render_demo")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--videos-dir", required=True, type=Path)
    p.add_argument("--truth", required=True, type=Path)
    args = p.parse_args(argv)
    spec = DemoSpec.from_params(params_mod.load(args.params)["demo"])

    rows = []
    counts = {"good": 0, "bad": 0, "no_mask": 0}
    for index, name in enumerate(video_names(spec.videos)):
        truths = []

        def frames():
            for image, truth in VideoRenderer(spec, index).frames():
                truths.append(truth)
                yield image

        encode_h264(args.videos_dir / f"{name}.mp4", frames(), (spec.size, spec.size), spec.fps, spec.crf)
        for n, t in enumerate(truths):
            rows.append((frame_id(name, n), t.label, name, n, f"{n / spec.fps:.6f}", f"{t.coverage:.4f}",
                         t.defects_visible))
            counts[t.label] += 1
        print(f"render_demo: {name}.mp4: {len(truths)} frames", file=sys.stderr)
    write_csv(args.truth, TRUTH_HEADER, rows)
    total = sum(counts.values())
    print("render_demo: class mix " + ", ".join(f"{k} {v / total:.2f}" for k, v in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

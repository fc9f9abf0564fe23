"""Stage render_demo: synthetic production-line videos and their per-frame ground truth.

In:  params.yaml (demo.*)
Out: --videos: one H.264 video per demo.videos (named demo-NN.mp4 by the stage table);
     --truth CSV: frame_id,label,video,frame,time,coverage,defects_visible, which stands in
     for a human annotator in the annotate stage.
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.atomic import write_csv
from maskinspect.data.demo import DemoSpec, VideoRenderer
from maskinspect.errors import PipelineError
from maskinspect.data.naming import frame_id
from maskinspect.data.video import encode_h264

TRUTH_HEADER = ("frame_id", "label", "video", "frame", "time", "coverage", "defects_visible")


@cli.stage("render_demo")
def main(args, params):
    spec = DemoSpec.from_params(params["demo"])
    if len(args.videos) != spec.videos:
        raise PipelineError(f"{len(args.videos)} video files given for demo.videos {spec.videos}")
    rows = []
    counts = {"good": 0, "bad": 0, "no_mask": 0}
    for index, path in enumerate(args.videos):
        name = path.stem
        truths = []

        def frames():
            for image, truth in VideoRenderer(spec, index).frames():
                truths.append(truth)
                yield image

        encode_h264(path, frames(), (spec.size, spec.size), spec.fps, spec.crf)
        for n, t in enumerate(truths):
            rows.append((frame_id(name, n), t.label, name, n, f"{n / spec.fps:.6f}", f"{t.coverage:.4f}",
                         t.defects_visible))
            counts[t.label] += 1
        print(f"render_demo: {path.name}: {len(truths)} frames", file=sys.stderr)
    write_csv(args.truth, TRUTH_HEADER, rows)
    total = sum(counts.values())
    print("render_demo: class mix " + ", ".join(f"{k} {v / total:.2f}" for k, v in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""Stage camera_frames: the labelled video frames as the camera's sensor sees them, for the
figures (and the training) through the camera's own input path.

The frame shards hold every frame at the model's size, scaled with area averaging; the camera
instead takes a 240 x 240 window of its sensor and lets the firmware scale it to the model's
input (maskinspect/camera.py). So every labelled frame (training and test) is decoded again at
the sensor's size: the centred square, scaled to 240 x 240.

In:  --videos, --video-index (the video shards' indexes: which video and source frame each id
     is), --train-labels and --test-labels, params.yaml (frames.crop)
Out: --frames .npy (N x 240 x 240 x 3 uint8) and --index .csv: the labelled frames, in id order
"""
from __future__ import annotations

import sys
from collections import defaultdict

from maskinspect import cli
from maskinspect.atomic import save_npy, write_csv
from maskinspect.camera import SENSOR
from maskinspect.errors import PipelineError
from maskinspect.frames import INDEX_HEADER, read_index
from maskinspect.labels import read_labelled
from maskinspect.video import frames_by_number


@cli.stage("camera_frames")
def main(args, params):
    import numpy as np

    rows = {r["frame_id"]: r for path in args.video_index for r in read_index(path)}
    ids = sorted(set(read_labelled(args.train_labels)[0]) | set(read_labelled(args.test_labels)[0]))
    missing = [i for i in ids if i not in rows]
    if missing:
        raise PipelineError(f"labelled frame {missing[0]} is in no frame index ({len(missing)} missing)")
    videos = {p.stem: p for p in args.videos}
    wanted: dict[str, list[str]] = defaultdict(list)
    for fid in ids:
        wanted[rows[fid]["video"]].append(fid)
    images = {}
    for video, fids in sorted(wanted.items()):
        if video not in videos:
            raise PipelineError(f"video {video} of the labelled frames is not among --videos")
        got = frames_by_number(videos[video], [int(rows[f]["frame"]) for f in fids], SENSOR, params["frames"]["crop"])
        images.update({f: got[int(rows[f]["frame"])] for f in fids})
        print(f"camera_frames: {videos[video].name}: {len(fids)} labelled frames at {SENSOR} px", file=sys.stderr)
    save_npy(args.frames, np.stack([images[f] for f in ids]) if ids else np.zeros((0, SENSOR, SENSOR, 3), np.uint8))
    write_csv(args.index, INDEX_HEADER, [tuple(rows[f][k] for k in INDEX_HEADER) for f in ids])


if __name__ == "__main__":
    sys.exit(main())

"""Stage camera_frames: the labelled video frames as the camera's sensor sees them, for the
figures (and the training) through the camera's own input path.

The frame shards hold every frame at the model's size, scaled with area averaging; the camera
instead takes a 240 x 240 window of its sensor and lets the firmware scale it to the model's
input (maskinspect/device/camera.py). So every labelled frame (training and test) is decoded again at
the sensor's size: the centred square, scaled to 240 x 240, each decoded only around its time (a
seek), not the whole video: an hour of footage costs what its labelled frames cost.

In:  --videos, --video-index (the video shards' indexes: which video and source frame each id
     is), --train-labels and --test-labels, params.yaml (frames.crop)
Out: --frames .npy (N x 240 x 240 x 3 uint8) and --index .csv: the labelled frames, in id order
"""
from __future__ import annotations

import sys
from collections import defaultdict

from maskinspect.workflow import runner as cli
from maskinspect.atomic import save_npy, write_csv
from maskinspect.device.camera import SENSOR
from maskinspect.errors import PipelineError
from maskinspect.data.frames import INDEX_HEADER, read_index
from maskinspect.data.labels import read_labelled
from maskinspect.data.video import frames_at, frames_by_number


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
        got = sensor_frames(videos[video], [rows[f] for f in fids], params["frames"]["crop"])
        images.update({f: got[int(rows[f]["frame"])] for f in fids})
        print(f"camera_frames: {videos[video].name}: {len(fids)} labelled frames at {SENSOR} px", file=sys.stderr)
    save_npy(args.frames, np.stack([images[f] for f in ids]) if ids else np.zeros((0, SENSOR, SENSOR, 3), np.uint8))
    write_csv(args.index, INDEX_HEADER, [tuple(rows[f][k] for k in INDEX_HEADER) for f in ids])


def sensor_frames(video, rows: list[dict], crop: str) -> dict:
    """The frames of these index rows at the sensor's window, by source frame number: decoded only
    around them (seeking by their times), or, for an index without times, in one pass."""
    if all(r["time"] for r in rows):
        return frames_at(video, {int(r["frame"]): float(r["time"]) for r in rows}, SENSOR, crop)
    return frames_by_number(video, [int(r["frame"]) for r in rows], SENSOR, crop)


if __name__ == "__main__":
    sys.exit(main())

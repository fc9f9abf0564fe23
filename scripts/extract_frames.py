"""Stage extract_frames: decode one video into a frame shard.

In:  --video (any size, codec and frame rate ffmpeg reads); params.yaml (frames.*)
Out: --frames .npy (N x size x size x 3 uint8) and --index .csv (frame_id, video, frame, time);
     --name is the video's name in frame ids.
One job per video, so Snakemake decodes videos in parallel. The frames go to the shard as they are
decoded, in bounded memory. A corrupt, empty, truncated or non-video file stops the stage with one
line and leaves no output, as does a video whose header claims frames larger than 8K or more than
frames.max_per_video (before anything is decoded).
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.data.frames import ShardWriter, write_index
from maskinspect.data.video import decode_frames


@cli.stage("extract_frames")
def main(args, params):
    cfg = params["frames"]
    shard = ShardWriter(args.frames, cfg["size"])
    try:
        numbers, times, info = decode_frames(args.video, cfg["fps"], cfg["size"], cfg["crop"], shard.add,
                                             cfg["max_per_video"], room=args.frames.parent)
    except BaseException as exc:
        shard.abandon(exc)
        raise
    shard.close()
    write_index(args.index, args.name, numbers, times)  # last: a complete index means a complete shard
    print(f"extract_frames: {args.video.name}: {len(numbers)} frames kept of a {info.width}x{info.height} "
          f"{info.codec} video at {info.fps or '?'} fps", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

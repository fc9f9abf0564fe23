"""Stage extract_frames: decode one video into a frame shard.

In:  --video (any size, codec and frame rate ffmpeg reads); params.yaml (frames.*)
Out: --frames .npy (N x size x size x 3 uint8) and --index .csv (frame_id, video, frame, time);
     --name is the video's name in frame ids.
One job per video, so Snakemake decodes videos in parallel. A corrupt, empty, truncated or
non-video file stops the stage with one line and leaves no output.
"""
from __future__ import annotations

import sys

from maskinspect import cli
from maskinspect.frames import write_shard
from maskinspect.video import extract_frames


@cli.stage("extract_frames")
def main(args, params):
    cfg = params["frames"]
    got = extract_frames(args.video, cfg["fps"], cfg["size"], cfg["crop"])
    write_shard(args.frames, args.index, args.name, got.frames, got.frame_numbers, got.times)
    info = got.info
    print(f"extract_frames: {args.video.name}: {len(got.frame_numbers)} frames kept of a {info.width}x{info.height} "
          f"{info.codec} video at {info.fps or '?'} fps", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

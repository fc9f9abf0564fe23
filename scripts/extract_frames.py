"""Stage frames: decode one video into a frame shard.

In:  a video file (any size, codec, frame rate ffmpeg reads); params.yaml (frames.*)
Out: --frames .npy (N x size x size x 3 uint8) and --index .csv (frame_id, video, frame, time)
One job per video, so Snakemake decodes videos in parallel. A corrupt, empty,
truncated or non-video file stops the stage with one line and leaves no output.
"""
from __future__ import annotations

import sys
from pathlib import Path

from maskinspect import cli, params as params_mod
from maskinspect.frames import write_shard
from maskinspect.video import extract_frames


@cli.stage("frames")
def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("video", type=Path)
    p.add_argument("--frames", required=True, type=Path, help="output shard (.npy)")
    p.add_argument("--index", required=True, type=Path, help="output index (.csv)")
    p.add_argument("--name", help="video name used in frame ids (default: file name without extension)")
    args = p.parse_args(argv)
    cfg = params_mod.load(args.params)["frames"]
    name = args.name or args.video.stem
    got = extract_frames(args.video, cfg["fps"], cfg["size"], cfg["crop"])
    write_shard(args.frames, args.index, name, got.frames,
                got.frame_numbers, got.times)
    info = got.info
    print(f"frames: {args.video.name}: {len(got.frame_numbers)} frames kept of a {info.width}x{info.height} "
          f"{info.codec} video at {info.fps or '?'} fps", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

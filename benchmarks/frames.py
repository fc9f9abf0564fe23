"""Frame extraction throughput: the frames stage vs the bare ffmpeg binary.

Both decode the same video to the same output (centre crop, area resize to the stored
size, RGB24); the stage adds frame numbering (showinfo), optional sampling, the Python
side (reading the pipe, checks, writing the shard and its index atomically) and process
start-up. Measured in one run, best of --repeat, and printed as a table.

    scripts/venv.sh python benchmarks/frames.py [--seconds 60] [--size 64] [--repeat 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskinspect.data.video import SCALE_FLAGS, ffmpeg_exe  # noqa: E402


def make_video(path: Path, seconds: int, size: str, rate: int) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-preset", "veryfast", "-y", str(path)], check=True)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--size", type=int, default=64, help="stored frame size")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["frames"].update(size=args.size, fps=None, crop="center")
        (tmp / "params.yaml").write_text(yaml.safe_dump(params))
        for label, size, rate in (("camera QVGA", "320x240", 30), ("phone 720p", "1280x720", 30)):
            video = tmp / f"{size}.mp4"
            make_video(video, args.seconds, size, rate)
            frames = args.seconds * rate
            bare = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video),
                    "-vf", f"crop=min(iw\\,ih):min(iw\\,ih),scale={args.size}:{args.size}:flags={SCALE_FLAGS}",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
            stage = [sys.executable, str(ROOT / "scripts" / "extract_frames.py"), str(video),
                     "--frames", str(tmp / "f.npy"), "--index", str(tmp / "f.csv")]
            t_bare = best_of(args.repeat, lambda: subprocess.run(bare, stdout=subprocess.DEVNULL, check=True))
            t_stage = best_of(args.repeat, lambda: subprocess.run(stage, cwd=tmp, check=True, capture_output=True))
            rows.append((label, size, frames, t_bare, t_stage))
    print(f"\nFrame extraction to {args.size}x{args.size} RGB, every frame, best of {args.repeat}\n")
    print(f"| video | source | frames | bare ffmpeg s | frames stage s | bare fps | stage fps | stage / bare |")
    print(f"|---|---|---:|---:|---:|---:|---:|---:|")
    for label, size, frames, t_bare, t_stage in rows:
        print(f"| {label} | {size} | {frames} | {t_bare:.2f} | {t_stage:.2f} | {frames / t_bare:.0f} | "
              f"{frames / t_stage:.0f} | {t_stage / t_bare:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

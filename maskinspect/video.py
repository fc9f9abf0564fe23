"""Video in and out through the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg,
no ffprobe): H.264 encoding of the demo videos, probing, and frame extraction.

Frame extraction keeps, at a fixed rate, the first decoded frame of each 1/rate slot,
center-crops it to a square (optional), resizes it with area averaging and returns
RGB uint8 arrays with an index of source frame number and timestamp. The source frame
number comes from ffmpeg itself (a showinfo filter before the selection), so frame ids
stay the same whatever the sampling rate: a label given to `A-012430` stays valid.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import ffmpeg
import imageio_ffmpeg
import numpy as np

from .atomic import atomic_path
from .errors import PipelineError

SCALE_FLAGS = "area+accurate_rnd+full_chroma_int+bitexact"
# One instruction set for ffmpeg's own code and for x264, whatever the CPU offers: their
# AVX-512 paths give other bytes than their SSE/AVX2 ones (seen here: an AVX-512 machine
# encoded the tiny demo differently from one without it, so two frames that were distinct
# on one machine decoded pixel-identical on the other). SSE4.2 is on every x86-64 machine
# this project runs on; the x264 list is the same level spelled as x264 spells it.
FFMPEG_CPUFLAGS = ("-cpuflags", "sse4.2")
X264_ASM = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2"


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_h264(path: str | Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: int, crf: int) -> int:
    """Encode RGB frames to an H.264 MP4, atomically. Returns the number of frames.

    Bit-exact flags, one encoder thread and a fixed instruction set make the file a function
    of the pixels alone, on any x86-64 machine.
    """
    width, height = size
    count = 0
    with atomic_path(path, suffix=".mp4") as tmp:
        process = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
            .output(str(tmp), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="medium",
                    threads=1, movflags="+faststart", map_metadata=-1, fflags="+bitexact",
                    **{"flags:v": "+bitexact", "x264-params": f"asm={X264_ASM}"})
            .global_args(*FFMPEG_CPUFLAGS, "-hide_banner", "-nostats", "-loglevel", "error")
            .run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True)
        )
        try:
            for frame in frames:
                if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                    raise ValueError(f"frame {count} has shape {frame.shape} {frame.dtype}")
                process.stdin.write(frame.tobytes())
                count += 1
        finally:
            process.stdin.close()
            stderr = process.stderr.read().decode(errors="replace")
            code = process.wait()
        if code != 0:
            last = (stderr.strip().splitlines() or ["no message"])[-1]
            raise PipelineError(f"{path}: ffmpeg could not encode ({last})")
    return count


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float | None
    duration: float | None
    codec: str


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+).*?, (?P<w>\d{2,5})x(?P<h>\d{2,5})")
_FPS = re.compile(r"(?P<fps>\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(?P<fps>\d+(?:\.\d+)?) tbr")
_DURATION = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)")
_SHOWINFO = re.compile(r"\[Parsed_showinfo_(?P<filter>\d+) @ [^\]]+\] \[info\] n:\s*(?P<n>\d+) pts:\s*(?P<pts>-?\d+) pts_time:(?P<t>-?[\d.e+-]+)")
_LEVEL = re.compile(r"\[(?P<level>panic|fatal|error)\] (?P<msg>.*)")


def parse_header(path: Path, log: str) -> VideoInfo:
    """The input description ffmpeg prints (we have no ffprobe)."""
    stream = _STREAM.search(log)
    if not stream:
        raise PipelineError(f"{path}: has no video stream")
    line = log[stream.start():].splitlines()[0]
    fps = _FPS.search(line) or _TBR.search(line)
    duration = _DURATION.search(log)
    seconds = None
    if duration:
        seconds = int(duration["h"]) * 3600 + int(duration["m"]) * 60 + float(duration["s"])
    return VideoInfo(width=int(stream["w"]), height=int(stream["h"]), fps=float(fps["fps"]) if fps else None,
                     duration=seconds, codec=stream["codec"])


def _check_file(path: Path) -> None:
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if not path.is_file():
        raise PipelineError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise PipelineError(f"{path}: is empty (0 bytes)")


def _errors_in(log: str) -> list[str]:
    return [m["msg"].strip() for m in map(_LEVEL.search, log.splitlines()) if m]


@dataclass(frozen=True)
class Extracted:
    frames: np.ndarray          # (n, size, size, 3) uint8
    frame_numbers: list[int]    # source frame number (decode order) of each kept frame
    times: list[float]          # presentation time in seconds of each kept frame
    info: VideoInfo


def extraction_args(path: Path, fps: float | None, size: int, crop: str) -> list[str]:
    """The ffmpeg command line of the frames stage (also timed by benchmarks/frames.py)."""
    stream = ffmpeg.input(str(path))["v:0"].filter("showinfo", checksum=0)
    if fps is not None:
        # Keep the first frame of every 1/fps slot: a fixed grid, no drift.
        stream = stream.filter("select", f"isnan(prev_selected_t)+gt(floor(t*{fps}),floor(prev_selected_t*{fps}))")
        stream = stream.filter("showinfo", checksum=0)
    if crop == "center":
        stream = stream.filter("crop", "min(iw,ih)", "min(iw,ih)")
    stream = stream.filter("scale", size, size, flags=SCALE_FLAGS).filter("setsar", 1)
    out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    return [ffmpeg_exe(), *FFMPEG_CPUFLAGS, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
            *out.get_args()]


def _decode_with_progress(args: list[str], frame_bytes: int, name: str) -> tuple[int, bytes, str]:
    """Run ffmpeg, reading its frames as they come with a progress bar (frames decoded so far);
    its log is read on a thread beside, so that neither pipe fills up and stalls it."""
    import subprocess
    import threading

    from .training import progress

    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: log_chunks.append(process.stderr.read()), daemon=True)
    reader.start()
    chunks, have = [], 0
    bar = progress(None, desc=f"frames {name}", unit="frame")
    try:
        while chunk := process.stdout.read(max(frame_bytes, 1 << 16)):
            chunks.append(chunk)
            before, have = have // frame_bytes, have + len(chunk)
            bar.update(have // frame_bytes - before)
        returncode = process.wait()
    finally:
        bar.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join()
    return returncode, b"".join(chunks), b"".join(log_chunks).decode(errors="replace")


def extract_frames(path: str | Path, fps: float | None, size: int, crop: str) -> Extracted:
    """Decode `path` and return the kept frames; raise PipelineError naming the file on bad input."""
    path = Path(path)
    _check_file(path)
    args = extraction_args(path, fps, size, crop)
    returncode, data, log = _decode_with_progress(args, size * size * 3, path.name)
    errors = _errors_in(log)
    if returncode != 0:
        reason = errors[-1] if errors else (log.strip().splitlines() or ["unknown error"])[-1]
        if "Input #0" in log and not _STREAM.search(log):  # a readable file, just no picture in it
            raise PipelineError(f"{path}: has no video stream")
        raise PipelineError(f"{path}: not a readable video (ffmpeg: {reason})")
    info = parse_header(path, log)
    if errors:
        raise PipelineError(f"{path}: corrupt or truncated video: ffmpeg reported {len(errors)} "
                            f"decoding error(s), first: {errors[0]}")

    decoded: dict[int, int] = {}   # pts -> source frame number
    kept: list[tuple[int, float]] = []
    last_filter = "2" if fps is not None else "0"
    for m in _SHOWINFO.finditer(log):
        if m["filter"] == "0":
            decoded[int(m["pts"])] = int(m["n"])
        if m["filter"] == last_filter:
            kept.append((int(m["pts"]), float(m["t"])))
    frame_bytes = size * size * 3
    if not kept or not data:
        raise PipelineError(f"{path}: contains no decodable video frames")
    if len(data) != frame_bytes * len(kept):
        raise PipelineError(f"{path}: ffmpeg returned {len(data)} bytes for {len(kept)} frames of {size}x{size}")
    if info.duration and info.fps and len(decoded) < 0.9 * info.duration * info.fps - 2:
        raise PipelineError(f"{path}: truncated: the header says {info.duration:g} s at {info.fps:g} fps, "
                            f"but only {len(decoded)} frames decode")
    frames = np.frombuffer(data, dtype=np.uint8).reshape(len(kept), size, size, 3)
    numbers = [decoded[pts] for pts, _ in kept]
    if len(set(numbers)) != len(numbers):
        raise PipelineError(f"{path}: repeated timestamps; cannot number its frames")
    return Extracted(frames=frames, frame_numbers=numbers, times=[t for _, t in kept], info=info)


def frames_by_number(path: str | Path, numbers: Iterable[int], size: int, crop: str) -> dict[int, np.ndarray]:
    """Source frames `numbers` (decode order, as frame ids count them) of a video, centre-cropped
    and scaled to size x size: decoded in one pass, keeping only those asked for."""
    import subprocess

    path = Path(path)
    _check_file(path)
    wanted = set(int(n) for n in numbers)
    if not wanted:
        return {}
    frame_bytes = size * size * 3
    args = extraction_args(path, None, size, crop)
    args[args.index("level+info")] = "error"  # no per-frame showinfo lines: frames come in decode order
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found: dict[int, np.ndarray] = {}
    n = 0
    try:
        while len(found) < len(wanted):
            data = process.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            if n in wanted:
                found[n] = np.frombuffer(data, dtype=np.uint8).reshape(size, size, 3).copy()
            n += 1
    finally:
        process.kill()
        process.communicate()
    missing = sorted(wanted - set(found))
    if missing:
        raise PipelineError(f"{path}: has no frame {missing[0]} (it decodes {n} frames)")
    return found

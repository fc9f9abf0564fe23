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

from maskinspect.atomic import atomic_path
from maskinspect.errors import PipelineError

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


# What a video may claim before anything is decoded: ffmpeg holds whole frames in memory, and the
# frames kept go to disk. 8K (7680 x 4320) is far beyond a line camera; frames.max_per_video
# bounds the count (a video whose header claims more is refused, and one that decodes more is
# stopped there).
MAX_PIXELS = 7680 * 4320


def probe(path: str | Path) -> VideoInfo:
    """The video's header as ffmpeg reads it, before any frame is decoded."""
    import subprocess

    path = Path(path)
    _check_file(path)
    result = subprocess.run([ffmpeg_exe(), *FFMPEG_CPUFLAGS, "-hide_banner", "-nostdin", "-i", str(path)],
                            capture_output=True, text=True, errors="replace", timeout=120)
    log = result.stderr[:1 << 16]
    if "Input #0" not in log:
        reason = (_errors_in(log) or log.strip().splitlines() or ["unknown error"])[-1]
        raise PipelineError(f"{path}: not a readable video (ffmpeg: {reason.strip()[:200]})")
    return parse_header(path, log)


def check_claims(path: Path, info: VideoInfo, keep_fps: float | None, max_frames: int) -> int | None:
    """Refuse a video whose header claims frames too large or too many, before decoding; returns
    the frames it claims to keep (None when the header does not say)."""
    if info.width * info.height > MAX_PIXELS:
        raise PipelineError(f"{path}: claims {info.width}x{info.height} frames, more than the "
                            f"{MAX_PIXELS // 1_000_000} megapixels of 8K: refused before decoding")
    rate = keep_fps if keep_fps is not None else info.fps
    if not info.duration or not rate:
        return None
    claimed = int(info.duration * min(rate, info.fps or rate)) + 1
    if claimed > max_frames:
        raise PipelineError(f"{path}: claims about {claimed:,} frames ({info.duration:,.0f} s at {rate:g} fps), more "
                            f"than frames.max_per_video {max_frames:,}: refused before decoding (frames.fps keeps fewer)")
    return claimed


class _Log:
    """ffmpeg's log, read as it comes on a thread and kept small: the header, the errors, and from
    the showinfo lines which source frame each kept one is (not every line: an hour of video at
    30 fps prints 200,000 of them)."""

    def __init__(self, last_filter: str):
        self.last_filter = last_filter
        self.header: list[str] = []
        self.errors: list[str] = []
        self.decoded: dict[int, int] = {}   # pts -> source frame number, pruned as frames are kept
        self.kept: list[tuple[int, float]] = []
        self.numbers: list[int] = []
        self.count = 0

    def feed(self, line: str) -> None:
        m = _SHOWINFO.search(line)
        if m is None:
            level = _LEVEL.search(line)
            if level:
                self.errors.append(level["msg"].strip())
            elif self.count == 0 and len(self.header) < 400:
                self.header.append(line)
            return
        pts = int(m["pts"])
        if m["filter"] == "0":
            self.decoded[pts] = int(m["n"])
            self.count += 1
        if m["filter"] == self.last_filter:
            self.kept.append((pts, float(m["t"])))
            self.numbers.append(self.decoded.get(pts, -1))
            if len(self.decoded) > 4096:  # frames decoded before this kept one are never looked up again
                self.decoded = {p: n for p, n in self.decoded.items() if p >= pts}


def _decode(args: list[str], frame_bytes: int, name: str, sink, log: _Log, max_frames: int, path: Path) -> int:
    """Run ffmpeg, handing whole frames to `sink` as they come (a progress bar counts them), its
    log parsed beside on a thread so that neither pipe fills up. Stops at max_frames."""
    import subprocess
    import threading

    from maskinspect.model.training import progress

    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read_log():
        for raw in process.stderr:
            log.feed(raw.decode(errors="replace"))

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    have, pending = 0, b""
    bar = progress(None, desc=f"frames {name}", unit="frame")
    try:
        while chunk := process.stdout.read(max(frame_bytes, 1 << 16)):
            pending += chunk
            whole = len(pending) // frame_bytes * frame_bytes
            if whole:
                if have + whole // frame_bytes > max_frames:
                    raise PipelineError(f"{path}: decodes more than frames.max_per_video {max_frames:,} frames "
                                        f"(its header did not say so): stopped")
                sink(pending[:whole])
                pending = pending[whole:]
                have += whole // frame_bytes
                bar.update(whole // frame_bytes)
        returncode = process.wait()
    finally:
        bar.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join()
    if pending:
        raise PipelineError(f"{path}: ffmpeg returned part of a frame ({len(pending)} bytes)")
    return returncode


def _size(n: int) -> str:
    """Bytes as a person reads them: 0.7 MB, 1.4 GB (a tiny disk must not read 0.0 GB)."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def decode_frames(path: str | Path, fps: float | None, size: int, crop: str, sink,
                  max_frames: int = 500_000, room: Path | None = None) -> tuple[list[int], list[float], VideoInfo]:
    """Decode `path`, handing the kept frames (raw RGB, size x size) to `sink` in order; returns
    their source frame numbers, times and the video's header. Bad input is one PipelineError
    naming the file; a header claiming more than the bounds, or more frames than the disk under
    `room` holds, is refused before decoding."""
    import shutil

    path = Path(path)
    info = probe(path)
    claimed = check_claims(path, info, fps, max_frames)
    if claimed and room is not None:
        need, free = claimed * size * size * 3, shutil.disk_usage(room).free
        if need > free:
            raise PipelineError(f"{path}: its frames need about {_size(need)} at {size} px, {_size(free)} "
                                f"are free under {room}: refused before decoding")
    log = _Log("2" if fps is not None else "0")
    returncode = _decode(extraction_args(path, fps, size, crop), size * size * 3, path.name, sink, log,
                         max_frames, path)
    if returncode != 0:
        reason = log.errors[-1] if log.errors else "".join(log.header[-1:]).strip() or "unknown error"
        raise PipelineError(f"{path}: not a readable video (ffmpeg: {reason})")
    if log.errors:
        raise PipelineError(f"{path}: corrupt or truncated video: ffmpeg reported {len(log.errors)} "
                            f"decoding error(s), first: {log.errors[0]}")
    if not log.kept:
        raise PipelineError(f"{path}: contains no decodable video frames")
    if info.duration and info.fps and log.count < 0.9 * info.duration * info.fps - 2:
        raise PipelineError(f"{path}: truncated: the header says {info.duration:g} s at {info.fps:g} fps, "
                            f"but only {log.count} frames decode")
    if -1 in log.numbers or len(set(log.numbers)) != len(log.numbers):
        raise PipelineError(f"{path}: repeated timestamps; cannot number its frames")
    return log.numbers, [t for _, t in log.kept], info


def extract_frames(path: str | Path, fps: float | None, size: int, crop: str,
                   max_frames: int = 500_000) -> Extracted:
    """Decode `path` and return the kept frames in memory (a few hundred: the emulator, the tests;
    the frames stage streams to disk with decode_frames)."""
    chunks: list[bytes] = []
    numbers, times, info = decode_frames(path, fps, size, crop, chunks.append, max_frames)
    data = b"".join(chunks)
    if len(data) != size * size * 3 * len(numbers):
        raise PipelineError(f"{path}: ffmpeg returned {len(data)} bytes for {len(numbers)} frames of {size}x{size}")
    frames = np.frombuffer(data, dtype=np.uint8).reshape(len(numbers), size, size, 3)
    return Extracted(frames=frames, frame_numbers=numbers, times=times, info=info)


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


SEEK_BEFORE = 2.0     # seconds decoded before a wanted frame: from a keyframe ffmpeg seeks to, onwards
SEGMENT_GAP = 8.0     # wanted frames further apart than this are decoded as separate segments


def frames_at(path: str | Path, times: dict[int, float], size: int, crop: str) -> dict[int, np.ndarray]:
    """Source frames (number -> presentation time, as the frame index holds them) centre-cropped and
    scaled to size x size, decoding only around them: the wanted times are grouped into segments,
    and ffmpeg seeks to each (a keyframe before it, then frame-accurately) with the original
    timestamps kept, so each frame is found by its time. The pixels are those of a decode from the
    start (closed GOPs; a frame is decoded from its own keyframe either way)."""
    import subprocess

    path = Path(path)
    _check_file(path)
    order = sorted(times.items(), key=lambda kv: kv[1])
    segments: list[list[tuple[int, float]]] = []
    for number, t in order:
        if segments and t - segments[-1][-1][1] <= SEGMENT_GAP:
            segments[-1].append((number, t))
        else:
            segments.append([(number, t)])
    frame_bytes = size * size * 3
    found: dict[int, np.ndarray] = {}
    for segment in segments:
        start, end = max(0.0, segment[0][1] - SEEK_BEFORE), segment[-1][1]
        args = extraction_args(path, None, size, crop)
        at = args.index("-i")
        # input seeking (a keyframe, then accurate) and reading up to just past the segment's last frame
        args[at:at] = ["-copyts", "-ss", f"{start:.6f}", "-to", f"{end + 0.5:.6f}"]
        result = subprocess.run(args, capture_output=True, timeout=600)
        shown = [float(m["t"]) for m in _SHOWINFO.finditer(result.stderr.decode(errors="replace")) if m["filter"] == "0"]
        data = result.stdout
        for number, t in segment:
            k = next((i for i, s in enumerate(shown) if abs(s - t) < 5e-4), None)
            if k is None or (k + 1) * frame_bytes > len(data):
                raise PipelineError(f"{path}: no frame at {t:.3f} s (frame {number}) after seeking there")
            found[number] = np.frombuffer(data[k * frame_bytes:(k + 1) * frame_bytes], np.uint8).reshape(size, size, 3).copy()
    return found

"""Files from elsewhere are doors (docs/security.md): a checkpoint whose pickle runs a command, a
Label Studio export that is huge, deep or one enormous string, a video that claims to decode to
more than any disk or memory holds. Each is refused in one line, or handled in bounded memory,
through the stage or command that reads it."""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script, tiny_params, venv_env, write_params
from maskinspect.errors import PipelineError
from maskinspect.data.labels import MAX_LABELS_BYTES, read_labels
from maskinspect.data.video import ffmpeg_exe


class _RunsACommand:
    """Unpickling this runs `touch <marker>`: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
def test_a_checkpoint_whose_pickle_runs_a_command_is_refused_and_never_runs_it(tmp_path, suffix):
    marker = tmp_path / "it-ran"
    evil = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {"model.backbone.0.weight": torch.zeros(1)}, "hook": _RunsACommand(marker)}, evil)
    write_params(tmp_path / "params.yaml", tiny_params())
    result = run_script("pretrain.py", "--frames", "none.npy", "--init", evil, "--backbone", "b.safetensors",
                        "--loss", "l.csv", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pretrain: error: {evil}: its pickle calls posix.system, which is neither a tensor nor a container: "
        f"refused (nothing in it was run)"]
    assert not marker.exists()
    assert not (tmp_path / "b.safetensors").exists()


# -- Label Studio exports ---------------------------------------------------------------------------

def _peak_rss_mb(code: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run Python code in a child and return its result and peak resident memory."""
    # VmHWM, the high-water mark of this process's own memory: ru_maxrss would carry the parent's
    # across a vfork and exec (Linux keeps it), so inside a large pytest it measured pytest.
    result = subprocess.run([sys.executable, "-c", code + "\nimport re, sys\nprint('peak-rss-kb', re.search("
                             "r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), file=sys.stderr)"],
                            capture_output=True, text=True, env=venv_env(PYTHONPATH=str(ROOT)), timeout=600)
    # Found by its mark: a warning printed at exit must not be taken for the figure.
    peaks = re.findall(r"^peak-rss-kb (\d+)$", result.stderr, re.M)
    assert peaks, f"the child printed no peak: {result.stderr[-2000:]}"
    return result, int(peaks[-1]) / 1024


def test_an_export_of_100000_tasks_is_read_in_bounded_memory(tmp_path):
    task = {"id": 0, "data": {"image": "/data/local-files/?d=data/labels/to_label/images/x.png", "frame_id": ""},
            "annotations": [{"id": 1, "result": [{"type": "choices", "from_name": "label", "to_name": "image",
                                                    "value": {"choices": ["good"]}}], "was_cancelled": False}]}
    tasks = []
    for n in range(100_000):
        t = json.loads(json.dumps(task))
        t["id"], t["data"]["frame_id"] = n, f"line-{n // 10_000}-{n:06d}"
        tasks.append(t)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result, peak = _peak_rss_mb(f"from maskinspect.data.labels import read_labels\n"
                                f"print(len(read_labels({str(export)!r})))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "100000"
    assert peak < 1500, f"{export.stat().st_size / 1e6:.0f} MB export read with a {peak:.0f} MB peak"


def test_a_deeply_nested_export_is_one_line(tmp_path):
    export = tmp_path / "deep.json"
    export.write_text("[" * 1_000_000 + "]" * 1_000_000)
    with pytest.raises(PipelineError, match=r"deep.json: nests deeper than any labels file or export: refused"):
        read_labels(export)


def test_an_export_holding_a_1_gb_string_is_refused_unread(tmp_path):
    export = tmp_path / "huge.json"
    with export.open("wb") as f:  # sparse: a gigabyte that costs no disk
        f.write(b'[{"data": {"frame_id": "')
        f.seek(1 << 30)
        f.write(b'"}, "annotations": []}]')
    assert export.stat().st_size > MAX_LABELS_BYTES
    with pytest.raises(PipelineError, match=r"huge.json: 1,074 MB, more than a labels file or export may be "
                                            r"\(268 MB\): refused unread"):
        read_labels(export)


def test_a_csv_with_an_enormous_field_is_one_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("frame_id,label\n" + "x" * 200_000 + ",good\n")
    with pytest.raises(PipelineError, match=r"labels.csv: not a readable CSV \(field larger than field limit"):
        read_labels(labels)


# -- videos (ffmpeg parses them) ------------------------------------------------------------------

def y4m(path: Path, width: int, height: int, rate: str = "25:1", frames: int = 1) -> Path:
    """A raw YUV4MPEG2 video whose header claims this frame size; its frames hold a few bytes only
    (ffmpeg reads the claim before any frame)."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F{rate} Ip A1:1 C420jpeg\n".encode() + b"FRAME\n\0\0\0\0" * frames)
    return path


def mkv_claiming(path: Path, seconds: float) -> Path:
    """A three-frame Matroska video whose header claims it lasts `seconds` (its Duration element
    rewritten: a float of milliseconds)."""
    import struct

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=black:size=32x32:rate=25:duration=0.12", "-c:v", "libx264", "-y", str(path)], check=True)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, 8-byte float
    assert at > 0
    data[at + 3:at + 11] = struct.pack(">d", seconds * 1000)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("case, expected", [
    ("16k", "claims 16000x16000 frames, more than the 33 megapixels of 8K: refused before decoding"),
    ("millions", "claims about 25,000,001 frames (1,000,000 s at 25 fps), more than frames.max_per_video "
                 "500,000: refused before decoding (frames.fps keeps fewer)"),
])
def test_a_video_claiming_to_be_huge_is_refused_before_decoding(tmp_path, case, expected):
    write_params(tmp_path / "params.yaml", tiny_params())
    video = y4m(tmp_path / "huge.y4m", 16000, 16000) if case == "16k" else mkv_claiming(tmp_path / "long.mkv", 1e6)
    result = run_script("extract_frames.py", "--video", video, "--frames", "out/v.npy", "--index", "out/v.csv",
                        "--name", "v", cwd=tmp_path, check=False,
                        prefix=("prlimit", f"--as={4 << 30}"))  # were it decoded, 16k frames would not fit
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"extract_frames: error: {video}: {expected}"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_video_decoding_past_the_bound_is_stopped_and_leaves_nothing(tmp_path, demo_data):
    """A header that does not say how long it is cannot claim anything: the bound holds while decoding."""
    write_params(tmp_path / "params.yaml", tiny_params(**{"frames.max_per_video": 10}))
    source = sorted((demo_data / "videos").glob("*.mp4"))[0]
    stream = tmp_path / "stream.h264"  # a raw H.264 stream: no duration in any header
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(source), "-c", "copy", "-f", "h264",
                    "-y", str(stream)], check=True)
    result = run_script("extract_frames.py", "--video", stream, "--frames", "out/v.npy", "--index", "out/v.csv",
                        "--name", "v", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"extract_frames: error: {stream}: decodes more than frames.max_per_video 10 frames (its header did not "
        f"say so): stopped"]
    assert not any((tmp_path / "out").iterdir())

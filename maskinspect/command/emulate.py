"""`maskinspect emulate BUNDLE VIDEO`: the bundle's own main.py on a video, through the emulated
camera (maskinspect.device.emulator): what the camera would say, frame by frame.

Each video frame becomes the sensor's window as the camera_frames stage makes it (the centred
square, scaled to 240 x 240 as main.py windows the QVGA frame); the emulated sensor hands it
over in RGB565 and the emulated `ml` feeds the model as the firmware does.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from maskinspect.device.camera import SENSOR  # openmv/main.py's WINDOW: the centred square of the QVGA frame
from maskinspect.errors import PipelineError

LED_NAMES = {1: "red", 2: "green", 3: "blue"}
LED_RGB = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 90, 230), "off": (90, 90, 90)}
BUNDLE_FILES = ("main.py", "model.tflite", "model.txt")
OUR_MAIN = Path(__file__).resolve().parents[2] / "openmv" / "main.py"   # what the bundle stage copies
_ANSWER = re.compile(r"^(?P<label>\S+) (?P<confidence>\d+\.\d+) (?P<fps>[\d.]+) fps$")


@dataclass
class Answer:
    frame: int            # source frame number (decode order)
    time: float           # presentation time, seconds
    label: str
    confidence: float
    led: str              # the LED lit after the frame: red / green / blue / off


@contextlib.contextmanager
def bundle_folder(bundle: Path) -> Iterator[Path]:
    """The bundle as a folder: dist/openmv/ as it is, or dist/openmv.zip unpacked to a temporary one."""
    if not bundle.exists():
        raise PipelineError(f"{bundle}: no such file or folder")
    if bundle.is_dir():
        folder = bundle
        missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
        if missing:
            raise PipelineError(f"{bundle}: not a bundle: {', '.join(missing)} missing")
        yield folder
        return
    if not zipfile.is_zipfile(bundle):
        raise PipelineError(f"{bundle}: neither a bundle folder nor a zip")
    with tempfile.TemporaryDirectory(prefix="maskinspect-bundle-") as tmp, zipfile.ZipFile(bundle) as zf:
        names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
        missing = [name for name in BUNDLE_FILES if name not in names]
        if missing:
            raise PipelineError(f"{bundle}: not a bundle: {', '.join(missing)} missing from the zip")
        for name in BUNDLE_FILES:
            (Path(tmp) / name).write_bytes(zf.read(names[name]))
        yield Path(tmp)


def check_trusted(folder: Path, trust: bool) -> None:
    """Refuse a bundle whose main.py is not the one this project writes, unless trusted: running it
    is running someone's code (sandboxed either way). A manifest that disagrees with its main.py
    is refused too."""
    theirs = hashlib.sha256((folder / "main.py").read_bytes()).hexdigest()
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text()).get("files", {}).get("main.py", {}).get("sha256")
        except (ValueError, AttributeError):
            listed = None
        if listed and listed != theirs and not trust:
            raise PipelineError(f"main.py: its sha256 {theirs[:12]}... is not the one its manifest lists "
                                f"({listed[:12]}...): the bundle was changed after it was built; --trust to run it anyway")
    ours = hashlib.sha256(OUR_MAIN.read_bytes()).hexdigest() if OUR_MAIN.is_file() else None
    if theirs != ours and not trust:
        raise PipelineError(f"main.py (sha256 {theirs[:12]}...) is not the one this project writes"
                            f"{f' ({ours[:12]}...)' if ours else ''}: running it runs someone's code; "
                            f"--trust runs it, in the sandbox")


def parse_answers(lines: list[str], led_states: list[dict[int, bool]], frame_numbers: list[int],
                  times: list[float]) -> list[Answer]:
    """One Answer per frame from what main.py printed (after its "model:" line) and the LEDs."""
    printed = [m for m in map(_ANSWER.match, lines) if m]
    if len(printed) != len(led_states):
        raise PipelineError(f"main.py printed {len(printed)} answers for {len(led_states)} frames: "
                            f"{(lines or ['nothing'])[-1]}")
    answers = []
    for i, (m, leds) in enumerate(zip(printed, led_states)):
        lit = [LED_NAMES[n] for n, on in sorted(leds.items()) if on]
        answers.append(Answer(frame=frame_numbers[i], time=times[i], label=m["label"],
                              confidence=float(m["confidence"]), led="+".join(lit) or "off"))
    return answers


@dataclass
class Emulated:
    answers: list[Answer]
    header: list[str]       # main.py's "model:" line (model, arena, input, labels)
    frames: np.ndarray      # the sensor frames
    rate: float             # the video's frame rate (or the one asked for)
    isolation: list[str]    # what the sandbox held (network, files, user)


def emulate(bundle: Path, video: Path, fps: float | None, max_frames: int | None, firmware: str,
            on_progress=None, trust: bool = False, timeout_s: float | None = None) -> Emulated:
    """Run the bundle's main.py on the video's frames, in the sandbox (device/emulator/sandbox.py)."""
    from maskinspect.device.emulator import sandbox
    from maskinspect.data.video import extract_frames

    with bundle_folder(bundle) as folder:
        check_trusted(folder, trust)
        extracted = extract_frames(video, fps, SENSOR, "center")
        frames, numbers, times = extracted.frames, extracted.frame_numbers, extracted.times
        if max_frames is not None:
            frames, numbers, times = frames[:max_frames], numbers[:max_frames], times[:max_frames]
        limit = timeout_s if timeout_s is not None else 60 + 0.5 * len(frames)
        record = sandbox.run(folder, frames, firmware, limit, on_progress)
    if "error" in record:
        raise PipelineError(f"main.py: {record['error']}")
    if record["frames"] < len(frames):
        raise PipelineError(f"main.py ended after {record['frames']} of {len(frames)} frames without an error "
                            f"(a camera program loops over the frames it takes)")
    lines = record["lines"]
    leds = [{int(k): v for k, v in s.items()} for s in record["led_states"]]
    header = [line for line in lines if line.startswith("model:")]
    answers = parse_answers(lines, leds, numbers, times)
    return Emulated(answers, header, frames, fps or extracted.info.fps or 10.0, record["isolation"])


def write_answers(path: Path, answers: list[Answer]) -> None:
    from maskinspect.atomic import write_csv

    write_csv(path, ["frame", "time_s", "label", "confidence", "led"],
              ([a.frame, f"{a.time:.3f}", a.label, f"{a.confidence:.2f}", a.led] for a in answers))


def drawn(frame: np.ndarray, answer: Answer) -> np.ndarray:
    """The frame with the answer on it: a band in the LED's colour with the class and confidence."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(img)
    colour = LED_RGB.get(answer.led, LED_RGB["off"])
    w, h = img.size
    band = max(18, h // 10)
    draw.rectangle([0, 0, w - 1, band], fill=colour)
    draw.rectangle([0, 0, w - 1, h - 1], outline=colour, width=3)
    draw.text((6, band // 2 - 5), f"{answer.label} {answer.confidence:.2f}  t={answer.time:.1f}s", fill=(255, 255, 255))
    return np.asarray(img)


def write_mp4(path: Path, frames: np.ndarray, answers: list[Answer], fps: float) -> int:
    from maskinspect.data.video import encode_h264

    return encode_h264(path, (drawn(f, a) for f, a in zip(frames, answers)), (SENSOR, SENSOR),
                       max(1, int(math.ceil(fps))), crf=20)

"""`maskinspect emulate BUNDLE VIDEO`: the bundle's own main.py on a video, through the emulated
camera (maskinspect.openmv_emulator): what the camera would say, frame by frame.

Each video frame becomes the sensor's window as the camera_frames stage makes it (the centred
square, scaled to 240 x 240 as main.py windows the QVGA frame); the emulated sensor hands it
over in RGB565 and the emulated `ml` feeds the model as the firmware does.
"""
from __future__ import annotations

import contextlib
import math
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .camera import SENSOR  # openmv/main.py's WINDOW: the centred square of the QVGA frame
from .errors import PipelineError

LED_NAMES = {1: "red", 2: "green", 3: "blue"}
LED_RGB = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 90, 230), "off": (90, 90, 90)}
BUNDLE_FILES = ("main.py", "model.tflite", "model.txt")
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


def emulate(bundle: Path, video: Path, fps: float | None, max_frames: int | None, firmware: str,
            on_progress=None) -> tuple[list[Answer], list[str], np.ndarray, float]:
    """Run the bundle's main.py on the video's frames. Returns the answers, main.py's first line
    (model, arena, input, labels), the sensor frames and the video's frame rate."""
    from .openmv_emulator import Emulator
    from .video import extract_frames

    with bundle_folder(bundle) as folder:
        extracted = extract_frames(video, fps, SENSOR, "center")
        frames, numbers, times = extracted.frames, extracted.frame_numbers, extracted.times
        if max_frames is not None:
            frames, numbers, times = frames[:max_frames], numbers[:max_frames], times[:max_frames]
        emulator = Emulator(_Counted(frames, on_progress), firmware=firmware)
        run = emulator.run(folder / "main.py")
    header = [line for line in run.lines if line.startswith("model:")]
    answers = parse_answers(run.lines, run.led_states, numbers, times)
    rate = fps or extracted.info.fps or 10.0
    return answers, header, frames, rate


class _Counted:
    """The frames, reporting each one the emulated sensor takes (for a progress bar)."""

    def __init__(self, frames: np.ndarray, on_progress):
        self.frames, self.on_progress = frames, on_progress

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.on_progress:
            self.on_progress(i)
        return self.frames[i]


def write_answers(path: Path, answers: list[Answer]) -> None:
    from .atomic import write_csv

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
    from .video import encode_h264

    return encode_h264(path, (drawn(f, a) for f, a in zip(frames, answers)), (SENSOR, SENSOR),
                       max(1, int(math.ceil(fps))), crf=20)

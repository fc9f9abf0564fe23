"""A host-side stand-in for the OpenMV modules the bundle's main.py imports (sensor, image,
ml, pyb, time), so that the very file that goes to the camera runs under CPython.

- sensor.snapshot() returns the next frame of the given data, as the camera would deliver
  it: the scene (a frame of any size) scaled with area averaging to the window main.py set,
  through RGB565 (5/6/5 bits per channel);
- ml.Model runs the model in the TFLite Micro interpreter with the firmware's input path
  (maskinspect/device/camera.py: its own bilinear scaling to the input shape, then pixel XOR 0x80 as
  int8) and returns dequantised outputs; its `labels` is None as on firmware 4.5.6-4.6.x, or
  read from model.txt as on 4.7 and later;
- pyb.LED records on/off; the LED state after each frame is kept;
- the loop stops after `max_frames` frames (snapshot raises StopEmulation, which main.py's
  own `except Exception` could not swallow).
"""
from __future__ import annotations

import contextlib
import io
import os
import runpy
import sys
import time as real_time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from maskinspect.device import runtime
from maskinspect.device.camera import camera_input, rgb565

FRAMESIZES = {"QQVGA": (160, 120), "QVGA": (320, 240), "VGA": (640, 480), "B64X64": (64, 64),
              "B128X128": (128, 128), "B160X160": (160, 160), "B320X320": (320, 320), "B64X32": (64, 32),
              "B128X64": (128, 64)}
EMULATED_MODULES = ("sensor", "image", "ml", "pyb", "time")


class StopEmulation(BaseException):
    """Raised by sensor.snapshot() once the frames are used up."""


@dataclass
class Run:
    lines: list[str]                          # what main.py printed
    frames: int                               # snapshots taken
    led_states: list[dict[int, bool]] = field(default_factory=list)  # LED state after each frame
    input_fed: list[np.ndarray] = field(default_factory=list)        # int8 inputs the model got


class Emulator:
    MODULES = EMULATED_MODULES

    def __init__(self, frames: np.ndarray, max_frames: int | None = None, firmware: str = "4.5.6"):
        self.frames = frames
        self.max_frames = len(frames) if max_frames is None else min(max_frames, len(frames))
        self.firmware = tuple(int(x) for x in firmware.split("."))
        self.leds: dict[int, bool] = {1: False, 2: False, 3: False}
        self.framesize = FRAMESIZES["QVGA"]
        self.window: tuple[int, int] | None = None
        self.taken = 0
        self.run_record = Run(lines=[], frames=0)

    # ---- the modules -----------------------------------------------------------------
    def _sensor(self) -> types.ModuleType:
        emu = self
        m = types.ModuleType("sensor")
        m.RGB565, m.GRAYSCALE = "RGB565", "GRAYSCALE"
        for name in FRAMESIZES:
            setattr(m, name, name)

        def set_framesize(size):
            emu.framesize = FRAMESIZES[size]

        def set_windowing(roi):
            emu.window = (roi[-2], roi[-1])

        def snapshot():
            if emu.taken:
                emu.run_record.led_states.append(dict(emu.leds))
            if emu.taken >= emu.max_frames:
                raise StopEmulation()
            frame = np.asarray(emu.frames[emu.taken])
            emu.taken += 1
            w, h = emu.window or emu.framesize
            if frame.shape[1] != w or frame.shape[0] != h:
                frame = np.asarray(PILImage.fromarray(frame).resize((w, h), PILImage.BOX))
            return emu._image_module.Image(rgb565(frame))

        m.reset = lambda: None
        m.set_pixformat = lambda fmt: None
        m.set_framesize = set_framesize
        m.set_windowing = set_windowing
        m.skip_frames = lambda n=None, time=None: None
        m.set_auto_gain = m.set_auto_exposure = m.set_auto_whitebal = lambda *a, **k: None
        m.snapshot = snapshot
        return m

    def _image(self) -> types.ModuleType:
        m = types.ModuleType("image")

        class Image:
            def __init__(self, pixels: np.ndarray):
                self.pixels = pixels

            def width(self):
                return self.pixels.shape[1]

            def height(self):
                return self.pixels.shape[0]

        m.Image = Image
        return m

    def _ml(self) -> types.ModuleType:
        emu = self
        m = types.ModuleType("ml")

        class Model:
            def __init__(self, path, load_to_fb=False):
                from maskinspect.model import tflite_graph

                self.path = Path(path)
                self._bytes = runtime.read_model(self.path)
                graph = tflite_graph.read(self.path)
                inp, out = graph.input(), graph.output()
                self.input_shape = [tuple(inp.shape)]
                self.output_shape = [tuple(out.shape)]
                self.input_dtype = "b" if inp.dtype == "INT8" else "f"
                self.input_scale, self.input_zero_point = inp.scale[0], inp.zero_point[0]
                self.output_scale, self.output_zero_point = out.scale[0], out.zero_point[0]
                self.len = len(self._bytes)
                self.ram = runtime.smallest_arena(self._bytes)
                self._interp = runtime.interpreter(self._bytes, self.ram)
                self.labels = None
                labels_file = self.path.with_suffix(".txt")
                if emu.firmware >= (4, 7, 0) and labels_file.exists():
                    self.labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]

            def predict(self, inputs):
                img = inputs[0]
                side = self.input_shape[0][1]
                x = camera_input(img.pixels[None], side)[0]
                emu.run_record.input_fed.append(x)
                self._interp.set_input(x[None], 0)
                self._interp.invoke()
                raw = np.array(self._interp.get_output(0)).astype(np.float32)
                return [(raw - self.output_zero_point) * self.output_scale]

        m.Model = Model
        return m

    def _pyb(self) -> types.ModuleType:
        emu = self
        m = types.ModuleType("pyb")

        class LED:
            def __init__(self, number):
                self.number = number

            def on(self):
                emu.leds[self.number] = True

            def off(self):
                emu.leds[self.number] = False

            def toggle(self):
                emu.leds[self.number] = not emu.leds[self.number]

        m.LED = LED
        return m

    def _time(self) -> types.ModuleType:
        m = types.ModuleType("time")

        class Clock:
            def __init__(self):
                self.last = real_time.perf_counter()
                self.period = 0.0

            def tick(self):
                now = real_time.perf_counter()
                self.period, self.last = now - self.last, now

            def fps(self):
                return 1.0 / self.period if self.period > 0 else 0.0

        m.clock = Clock
        m.sleep = lambda s: None
        m.sleep_ms = lambda ms: None
        m.ticks_ms = lambda: int(real_time.perf_counter() * 1000)
        m.ticks_diff = lambda a, b: a - b
        return m

    # ---- running main.py -------------------------------------------------------------
    def run(self, main_py: str | Path, builtins: dict | None = None) -> Run:
        """Run main.py on the frames (`builtins`: what main.py's code sees as its builtins; the
        sandbox passes an import that reaches the camera's API only)."""
        main_py = Path(main_py).resolve()
        self._image_module = self._image()
        fakes = {"sensor": self._sensor(), "image": self._image_module, "ml": self._ml(),
                 "pyb": self._pyb(), "time": self._time()}
        saved = {name: sys.modules.get(name) for name in EMULATED_MODULES}
        out = io.StringIO()
        cwd = os.getcwd()
        try:
            sys.modules.update(fakes)
            os.chdir(main_py.parent)
            with contextlib.redirect_stdout(out):
                runpy.run_path(str(main_py), run_name="__main__",
                               init_globals={"__builtins__": builtins} if builtins is not None else None)
        except StopEmulation:
            pass
        finally:
            os.chdir(cwd)
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
        self.run_record.lines = out.getvalue().splitlines()
        self.run_record.frames = self.taken
        return self.run_record

"""What the camera feeds the model: the sensor's RGB565 frame, scaled to the model's input by the
firmware's own bilinear, expanded to 8 bits and shifted to int8 (pixel XOR 0x80).

Read from OpenMV's firmware, v4.5.6 to v4.8.1 (README, "The camera's input path"):

- main.py takes QVGA frames windowed to the centred 240x240 square (SENSOR), in RGB565;
- `ml.Model.predict` draws the frame into an RGB565 image of the input size with
  imlib_draw_image(..., BILINEAR | CENTER | SCALE_ASPECT_EXPAND | BLACK_BACKGROUND): the scale
  keeps the aspect and crops the centre; destination pixel x samples source x / scale - 1/2 in
  16.16 fixed point, weighting the 2x2 neighbours with 5-bit fractions (rounded, no smoothing
  before a downscale: 240 -> 64 samples every 3.75 px); rows are mixed first, then columns;
- RGB565 becomes 8 bits as R8 = r5 << 3 | r5 >> 2, G8 = g6 << 2 | g6 >> 4, B8 = b5 << 3 | b5 >> 2,
  and the int8 input is that XOR 0x80, i.e. pixel - 128 (the model's input scale is ignored).
"""
from __future__ import annotations

import numpy as np

SENSOR = 240  # the square window of the QVGA sensor frame main.py takes


def to_rgb565(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r5, g6, b5) of 8-bit RGB frames (..., 3): what an RGB565 sensor keeps."""
    f = np.asarray(frames, dtype=np.uint8)
    return f[..., 0] >> 3, f[..., 1] >> 2, f[..., 2] >> 3


def expand(r5: np.ndarray, g6: np.ndarray, b5: np.ndarray) -> np.ndarray:
    """RGB565 back to 8-bit RGB, as the firmware does."""
    r5, g6, b5 = (np.asarray(c, dtype=np.uint16) for c in (r5, g6, b5))
    return np.stack([(r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2)], axis=-1).astype(np.uint8)


def rgb565(frames: np.ndarray) -> np.ndarray:
    """8-bit RGB frames as they look after a round trip through RGB565."""
    return expand(*to_rgb565(frames))


def _taps(src: int, scale: np.float32, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Along one axis: for each destination pixel drawn, the two source pixels and the 5-bit
    weight of the second, as imlib_draw_image's bilinear computes them; and where drawing starts."""
    f32 = np.float32
    scaled = int(np.floor(scale * f32(src)))
    start = int(np.floor(f32(size - scaled) / f32(2)))               # CENTER
    src_start = -start if start < 0 else 0                           # the crop of the longer side
    start = max(start, 0)
    end = min(start + scaled - src_start, size)
    frac = int(np.floor(f32(65536.0) / scale))                       # 16.16 step per destination pixel
    accum = int(np.floor(f32(src_start << 16) / scale)) - 0x8000     # bilinear's half-pixel shift, undone
    acc = accum + frac * np.arange(end - start, dtype=np.int64)
    index = acc >> 16
    weight = (acc >> 11) & 0x1F
    lo = np.clip(index, 0, src - 1)
    hi = np.where((index < 0) | (index >= src - 1), lo, index + 1)   # the edges repeat their pixel
    return lo, hi, weight, start


def firmware_resize(r5: np.ndarray, g6: np.ndarray, b5: np.ndarray, size: int):
    """The firmware's bilinear scaling of one RGB565 frame (h x w planes) to size x size."""
    h, w = r5.shape
    f32 = np.float32
    scale = max(f32(size) / f32(w), f32(size) / f32(h))              # SCALE_ASPECT_EXPAND
    rows_lo, rows_hi, wy, y0 = _taps(h, scale, size)
    cols_lo, cols_hi, wx, x0 = _taps(w, scale, size)
    wy = wy[:, None].astype(np.int32)
    wx = wx[None, :].astype(np.int32)
    out = []
    for plane in (r5, g6, b5):
        p = plane.astype(np.int32)
        # rows first, for both source columns of every destination pixel; then the columns
        left = ((32 - wy) * p[rows_lo][:, cols_lo] + wy * p[rows_hi][:, cols_lo] + 16) >> 5
        right = ((32 - wy) * p[rows_lo][:, cols_hi] + wy * p[rows_hi][:, cols_hi] + 16) >> 5
        drawn = np.zeros((size, size), dtype=np.int32)                 # BLACK_BACKGROUND elsewhere
        drawn[y0:y0 + len(rows_lo), x0:x0 + len(cols_lo)] = ((32 - wx) * left + wx * right + 16) >> 5
        out.append(drawn.astype(np.uint8))
    return tuple(out)


def camera_pixels(sensor_frames: np.ndarray, input_size: int) -> np.ndarray:
    """The pixels the model gets from 8-bit RGB sensor frames (n, h, w, 3), as uint8 NHWC at the
    input size: RGB565, the firmware's scaling, 8 bits again. (The float model takes them as
    the stored frames are taken; the int8 model as camera_input.)"""
    out = []
    for frame in np.asarray(sensor_frames):
        planes = to_rgb565(frame)
        if frame.shape[0] != input_size or frame.shape[1] != input_size:
            planes = firmware_resize(*planes, input_size)
        out.append(expand(*planes))
    return np.stack(out) if out else np.zeros((0, input_size, input_size, 3), np.uint8)


def camera_input(sensor_frames: np.ndarray, input_size: int) -> np.ndarray:
    """The int8 NHWC model input the camera makes of sensor frames: its pixels XOR 0x80."""
    return (camera_pixels(sensor_frames, input_size) ^ 0x80).view(np.int8)

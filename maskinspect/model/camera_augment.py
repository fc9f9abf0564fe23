"""Fine-tuning's augmentation, batched, on the model's device (finetune.augmenter: batched): the
same transforms as maskinspect/model/finetune.py's one-image-at-a-time PIL path, a batch at a
time in a few tensor operations, so that a GPU is not fed by one CPU core (the PIL camera path
costs 2 to 3.5 ms a sample there: docs/scale.md).

Per sample, from one seeded generator on the device (the same bytes run to run on one device):

- a rotation (augment.rotation degrees, black outside), a random resized crop (augment.min_scale
  of the area, aspect 3/4..4/3) and flips, composed into one affine sampling grid;
- either the stored frame moved straight to the model's input size, or (a share augment.camera
  of the samples) the camera's input path: the sensor-size frame moved at the sensor's size,
  sensor noise (augment.noise, 8-bit levels), RGB565, the firmware's own fixed-point bilinear
  down to the input (bit for bit maskinspect/device/camera.py's, as integer gathers), 8 bits;
- colour jitter at the input size (brightness, contrast, saturation, then hue as a turn of
  YIQ's chroma plane, in that order), and for camera samples RGB565 again, as the PIL path does.

Differences from the PIL path, of detail: one bilinear sampling instead of two (rotation, then
crop), no antialiasing (every crop here is scaled up or by less than 2), the jitter in a fixed
order instead of a random one, hue in YIQ instead of HSV. A test compares the two paths'
statistics; another checks that with no jitter the camera samples are the camera's pixels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from maskinspect.device.camera import _taps
from maskinspect.model.augment import _YIQ   # RGB -> YIQ, pretraining's views' hue turn too


class FirmwareResize:
    """maskinspect.device.camera.firmware_resize on a batch of RGB565 planes, as integer gathers:
    the taps of a (src x src) -> (size x size) scaling are the same for every frame. The scaling
    reads only `needed` source rows and columns (at most 2 per output pixel): the planes given
    are those rows and columns, so the moved frame is sampled there and nowhere else."""

    def __init__(self, src: int, size: int, device: torch.device):
        lo, hi, w, start = _taps(src, np.float32(size) / np.float32(src), size)
        needed = np.union1d(lo, hi)
        self.needed = torch.from_numpy(needed).to(device)
        self.lo = torch.from_numpy(np.searchsorted(needed, lo)).to(device)
        self.hi = torch.from_numpy(np.searchsorted(needed, hi)).to(device)
        self.w = torch.from_numpy(w.astype(np.int32)).to(device)
        self.start, self.size = start, size

    def __call__(self, planes: torch.Tensor) -> torch.Tensor:
        """(n, c, len(needed), len(needed)) int32 planes -> (n, c, size, size), black outside
        what is drawn. Rows are mixed first, then columns, each rounded, as the firmware does."""
        wy = self.w.view(1, 1, -1, 1)
        top, bottom = planes.index_select(2, self.lo), planes.index_select(2, self.hi)
        rows = lambda cols: ((32 - wy) * top.index_select(3, cols) + wy * bottom.index_select(3, cols) + 16) >> 5  # noqa: E731
        wx = self.w.view(1, 1, 1, -1)
        drawn = ((32 - wx) * rows(self.lo) + wx * rows(self.hi) + 16) >> 5
        n, c, h, w = drawn.shape
        if (h, w) == (self.size, self.size):
            return drawn
        out = torch.zeros(n, c, self.size, self.size, dtype=drawn.dtype, device=drawn.device)
        out[:, :, self.start:self.start + h, self.start:self.start + w] = drawn
        return out


def to_rgb565(x: torch.Tensor) -> torch.Tensor:
    """uint8-valued int32 NCHW RGB -> its (r5, g6, b5) planes, as the sensor keeps them."""
    return torch.stack([x[:, 0] >> 3, x[:, 1] >> 2, x[:, 2] >> 3], dim=1)


def expand(planes: torch.Tensor) -> torch.Tensor:
    """(r5, g6, b5) int32 planes back to 8-bit RGB, as the firmware expands them."""
    r5, g6, b5 = planes[:, 0], planes[:, 1], planes[:, 2]
    return torch.stack([(r5 << 3) | (r5 >> 2), (g6 << 2) | (g6 >> 4), (b5 << 3) | (b5 >> 2)], dim=1)


class BatchedAugment:
    """Augmented float NCHW [0, 1] model input for a batch of training samples."""

    def __init__(self, aug: dict, input_size: int, seed: int, device: torch.device):
        self.aug, self.size, self.device = aug, input_size, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.yiq = _YIQ.to(device)
        self.rgb = torch.linalg.inv(_YIQ).to(device)
        self.scalings: dict[int, FirmwareResize] = {}   # by the sensor frames' size (SENSOR in the pipeline)
        cj = aug["color_jitter"]
        self.jitter = cj
        self.hue = min(0.5, cj) if aug["hue"] is None else aug["hue"]  # as finetune.colour_jitter reads it

    def _u(self, n: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.gen, device=self.device)

    def theta(self, n: int) -> torch.Tensor:
        """Per sample, the affine map from output to source coordinates ([-1, 1], pixel centres):
        a rotation (black outside), a random resized crop and flips, as one map."""
        a = self.aug
        angle = self._u(n, -1.0, 1.0) * math.radians(a["rotation"])
        area = self._u(n, a["min_scale"], 1.0)
        # the aspect among those whose crop fits (torchvision draws again until one does)
        low = torch.clamp(torch.log(area), min=math.log(3 / 4))
        high = torch.clamp(-torch.log(area), max=math.log(4 / 3))
        ratio = torch.exp(low + (high - low) * self._u(n))
        w = torch.sqrt(area * ratio).clamp(max=1.0)   # half-extents in [-1, 1] coordinates
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (self._u(n) * 2 - 1) * (1 - w)
        cy = (self._u(n) * 2 - 1) * (1 - h)
        fx = torch.where(self._u(n) < (0.5 if a["hflip"] else 0.0), -1.0, 1.0)
        fy = torch.where(self._u(n) < (0.5 if a["vflip"] else 0.0), -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # source = R (diag(w fx, h fy) u + c): crop and flips in the rotated frame, then the rotation
        return torch.stack([torch.stack([cos * w * fx, -sin * h * fy, cos * cx - sin * cy], 1),
                            torch.stack([sin * w * fx, cos * h * fy, sin * cx + cos * cy], 1)], 1)

    def move(self, x: torch.Tensor, out_size: int, at: torch.Tensor | None = None) -> torch.Tensor:
        """The moved float NCHW frames sampled at out_size, bilinear; with `at` (output pixel
        indexes), only at those rows and columns."""
        n = x.shape[0]
        theta = self.theta(n)
        pixels = at if at is not None else torch.arange(out_size, device=self.device)
        u = (2 * pixels.float() + 1) / out_size - 1                           # pixel centres in [-1, 1]
        gx = theta[:, 0, 0, None, None] * u[None, None, :] + theta[:, 0, 1, None, None] * u[None, :, None] \
            + theta[:, 0, 2, None, None]
        gy = theta[:, 1, 0, None, None] * u[None, None, :] + theta[:, 1, 1, None, None] * u[None, :, None] \
            + theta[:, 1, 2, None, None]
        return F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    def colour(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation and hue jitter of float NCHW [0, 1] frames."""
        n, cj = x.shape[0], self.jitter
        if cj <= 0 and self.hue <= 0:
            return x
        shape = (n, 1, 1, 1)
        luma = self.yiq[0].view(1, 3, 1, 1)
        x = (x * self._u(n, max(0.0, 1 - cj), 1 + cj).view(shape)).clamp(0, 1)
        mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = ((x - mean) * self._u(n, max(0.0, 1 - cj), 1 + cj).view(shape) + mean).clamp(0, 1)
        grey = (x * luma).sum(1, keepdim=True)
        x = ((x - grey) * self._u(n, max(0.0, 1 - cj), 1 + cj).view(shape) + grey).clamp(0, 1)
        turn = self._u(n, -self.hue, self.hue) * 2 * math.pi
        yiq = torch.einsum("ij,njhw->nihw", self.yiq, x)
        cos, sin = torch.cos(turn).view(n, 1, 1), torch.sin(turn).view(n, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
        return torch.einsum("ij,njhw->nihw", self.rgb, yiq).clamp(0, 1)

    def stored(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC stored frames -> the model's input, moved and jittered."""
        x = self.move(frames.permute(0, 3, 1, 2).float().div_(255.0), self.size)
        return self.colour(x)

    def camera(self, sensor: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC sensor-size frames -> what the camera feeds the model, moved and jittered."""
        src = sensor.shape[1]
        scaling = None
        if src != self.size:   # as camera_pixels: a frame already at the input size is not scaled
            if src not in self.scalings:
                self.scalings[src] = FirmwareResize(src, self.size, self.device)
            scaling = self.scalings[src]
        # in 8-bit levels, sampled only where the firmware's scaling reads the frame
        x = self.move(sensor.permute(0, 3, 1, 2).float(), src, scaling.needed if scaling else None)
        if self.aug["noise"]:
            x = x + torch.randn(x.shape, generator=self.gen, device=self.device) * self.aug["noise"]
        planes = to_rgb565(x.round().clamp(0, 255).to(torch.int32))
        pixels = expand(scaling(planes) if scaling else planes)
        if self.jitter <= 0 and self.hue <= 0:
            return pixels.float().div_(255.0)
        jittered = (self.colour(pixels.float().div_(255.0)) * 255.0).round().to(torch.int32)
        return expand(to_rgb565(jittered)).float().div_(255.0)

    def __call__(self, frames: torch.Tensor, sensor: torch.Tensor | None, share: float) -> torch.Tensor:
        """A batch: each sample through the camera path with probability `share` (given sensor
        frames), else from its stored frame."""
        n = frames.shape[0]
        if sensor is None or share <= 0:
            return self.stored(frames)
        through = self._u(n) < share
        if bool(through.all()):
            return self.camera(sensor)
        out = torch.empty(n, 3, self.size, self.size, device=self.device)
        out[through] = self.camera(sensor[through])
        out[~through] = self.stored(frames[~through])
        return out

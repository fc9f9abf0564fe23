"""SimCLR's augmentations, batched, on whatever device the model is on: the views of a whole batch
made in a few tensor operations instead of one PIL image at a time on one CPU core (which fed a
GPU at 3.5% of what the model allows).

The same family of transforms as Lightly's SimCLRTransform, with our settings
(pretrain.transform): a random resized crop (scale min_scale..1 of the area, aspect 3/4..4/3),
horizontal and vertical flips, colour jitter with probability cj_prob (brightness, contrast and
saturation by up to 0.8 x cj_strength, hue by up to 0.2 x cj_strength, applied in that fixed
order), grey with probability gray_prob, and a Gaussian blur with probability blur_prob. Every
sample draws its own parameters from one seeded generator on the device, so a run is the same
bytes run to run on the same device; bilinear sampling with antialiasing left out (a crop is
never far below the input size here).

Crop and flips are one affine sampling grid per sample (affine_grid, grid_sample); hue turns
the chroma plane of YIQ, a rotation (the usual fast stand-in for HSV's hue).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# RGB <-> YIQ (NTSC)
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class BatchedViews:
    """Two augmented views of a batch of uint8 NHWC frames, as float NCHW in [0, 1]."""

    def __init__(self, transform: dict, input_size: int, seed: int, device: torch.device):
        self.t, self.size, self.device = transform, input_size, device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.yiq = _YIQ.to(device)
        self.rgb = torch.linalg.inv(_YIQ).to(device)

    def _u(self, n: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.gen, device=self.device)

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        area = self._u(n, self.t["min_scale"], 1.0)
        ratio = torch.exp(self._u(n, math.log(3 / 4), math.log(4 / 3)))
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (self._u(n) * 2 - 1) * (1 - w)
        cy = (self._u(n) * 2 - 1) * (1 - h)
        fx = torch.where(self._u(n) < self.t["hflip_prob"], -1.0, 1.0)
        fy = torch.where(self._u(n) < self.t["vflip_prob"], -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=self.device)
        theta[:, 0, 0], theta[:, 0, 2] = w * fx, cx
        theta[:, 1, 1], theta[:, 1, 2] = h * fy, cy
        grid = F.affine_grid(theta, (n, 3, self.size, self.size), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        n, s = x.shape[0], self.t["cj_strength"]
        on = (self._u(n) < self.t["cj_prob"]).float().view(n, 1, 1, 1)
        bright = self._u(n, 1 - 0.8 * s, 1 + 0.8 * s).view(n, 1, 1, 1)
        contrast = self._u(n, 1 - 0.8 * s, 1 + 0.8 * s).view(n, 1, 1, 1)
        saturation = self._u(n, 1 - 0.8 * s, 1 + 0.8 * s).view(n, 1, 1, 1)
        hue = self._u(n, -0.2 * s, 0.2 * s) * 2 * math.pi
        y = (x * bright).clamp(0, 1)
        grey = (y * self.yiq[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
        y = ((y - grey.mean((2, 3), keepdim=True)) * contrast + grey.mean((2, 3), keepdim=True)).clamp(0, 1)
        grey = (y * self.yiq[0].view(1, 3, 1, 1)).sum(1, keepdim=True)
        y = ((y - grey) * saturation + grey).clamp(0, 1)
        yiq = torch.einsum("ij,njhw->nihw", self.yiq, y)
        cos, sin = torch.cos(hue).view(n, 1, 1), torch.sin(hue).view(n, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
        y = torch.einsum("ij,njhw->nihw", self.rgb, yiq).clamp(0, 1)
        return on * y + (1 - on) * x

    def _grey(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        on = (self._u(n) < self.t["gray_prob"]).float().view(n, 1, 1, 1)
        grey = (x * self.yiq[0].view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
        return on * grey + (1 - on) * x

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        if self.t["blur_prob"] <= 0:
            return x
        n, k = x.shape[0], 5
        on = self._u(n) < self.t["blur_prob"]
        sigma = self._u(n, 0.1, 1.0)
        r = torch.arange(k, device=self.device, dtype=torch.float32) - k // 2
        kern = torch.exp(-(r.view(1, k) ** 2) / (2 * sigma.view(n, 1) ** 2))
        kern = kern / kern.sum(1, keepdim=True)
        kern = torch.where(on.view(n, 1), kern, (r == 0).float().view(1, k).expand(n, k))
        w = kern.repeat_interleave(3, 0)  # one kernel per sample and channel
        y = x.reshape(1, n * 3, *x.shape[2:])
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), w.view(n * 3, 1, 1, k), groups=n * 3)
        y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), w.view(n * 3, 1, k, 1), groups=n * 3)
        return y.view_as(x)

    def view(self, frames: torch.Tensor) -> torch.Tensor:
        """One augmented view of uint8 NHWC frames (already on the device)."""
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        return self._blur(self._grey(self._jitter(self._crop_flip(x))))

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(frames), self.view(frames)

"""What the training stages share: seeding, device, turning uint8 frames into model input."""
from __future__ import annotations

import random
import sys

import numpy as np
import torch
import torch.nn.functional as F


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG the stages touch (torch, numpy's global RNG that Lightly's blur and
    solarize use, Python's) and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def device() -> torch.device:
    """CUDA when present (same code, a GPU node of a cluster), CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_input(images: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 NHWC frames -> float NCHW in [0, 1] at the model's input size.

    Pixels in [0, 1], no mean/std: the network's first BatchNorm normalises, which is what
    the camera needs (its firmware feeds pixel - 128 with scale 1/255 to an int8 model).
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.no_grad()
def batched_forward(model: torch.nn.Module, images: np.ndarray, input_size: int, batch_size: int,
                    dev: torch.device | None = None) -> np.ndarray:
    """Run `model` in eval mode over uint8 frames, in batches; returns float32 outputs."""
    dev = dev or device()
    model.eval().to(dev)
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], input_size).to(dev)
        outs.append(model(x).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def progress(iterable, desc: str, total: int | None = None, unit: str = "it"):
    """A progress bar on stderr (also when Snakemake or DVC capture it), updated every 2 s and
    shown only once the work has taken 2 s (a quick run, or one line of refusal, stays clean)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, mininterval=2.0, leave=True,
                dynamic_ncols=True, delay=2.0, unit=unit)

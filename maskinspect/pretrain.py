"""Self-supervised pretraining of the backbone with SimCLR (Lightly), on all frames.

The loop follows Lightly's own SimCLR example: backbone, projection head, NT-Xent loss,
two augmented views of each frame. No labels are used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .training import device, progress, seed_everything


class TwoViews(Dataset):
    """Frames (uint8 NHWC) as pairs of augmented views."""

    def __init__(self, images: np.ndarray, transform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(np.asarray(self.images[i])))


def simclr_transform(cfg: dict, input_size: int):
    from lightly.transforms import SimCLRTransform

    t = cfg["transform"]
    return SimCLRTransform(
        input_size=input_size,
        cj_prob=t["cj_prob"], cj_strength=t["cj_strength"],
        min_scale=t["min_scale"], random_gray_scale=t["gray_prob"],
        gaussian_blur=t["blur_prob"], sigmas=(0.1, 1.0),
        vf_prob=t["vflip_prob"], hf_prob=t["hflip_prob"],
        normalize=None,  # the backbone's input BatchNorm normalises (and folds into the int8 model)
    )


class SimCLR(nn.Module):
    def __init__(self, backbone: nn.Module, features: int, hidden_dim: int, output_dim: int):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(features, hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))


@dataclass
class PretrainResult:
    losses: list[float]      # mean NT-Xent loss per epoch
    device: str


def pretrain(backbone: nn.Module, images: np.ndarray, cfg: dict, model_cfg: dict) -> PretrainResult:
    """Train `backbone` in place with SimCLR on `images` for cfg['epochs'] epochs."""
    from lightly.loss import NTXentLoss

    gen = seed_everything(cfg["seed"])
    dev = device()
    # channels_last: about 30 % faster convolutions on the CPU, same results.
    model = SimCLR(backbone, model_cfg["features"], cfg["projection"]["hidden_dim"],
                   cfg["projection"]["output_dim"]).to(dev, memory_format=torch.channels_last)
    batch_size = min(cfg["batch_size"], len(images))
    # Drop the ragged last batch (a batch of one has no negatives), unless it is the only one.
    loader = DataLoader(TwoViews(images, simclr_transform(cfg, model_cfg["input_size"])),
                        batch_size=batch_size, shuffle=True, drop_last=len(images) > batch_size,
                        num_workers=0, generator=gen)
    criterion = NTXentLoss(temperature=cfg["temperature"])
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg["epochs"] * len(loader)))
    losses: list[float] = []
    bar = progress(range(cfg["epochs"]), desc="pretrain")
    for _epoch in bar:
        model.train()
        total, batches = 0.0, 0
        for views in loader:
            x0 = views[0].to(dev, memory_format=torch.channels_last)
            x1 = views[1].to(dev, memory_format=torch.channels_last)
            loss = criterion(model(x0), model(x1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    backbone.to("cpu", memory_format=torch.contiguous_format)
    return PretrainResult(losses=losses, device=str(dev))

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

from maskinspect.model.training import device, progress, seed_everything


class TwoViews(Dataset):
    """Frames (uint8 NHWC) as pairs of augmented views."""

    def __init__(self, images, transform):  # an array, or Frames (a frame read at a time)
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


def pil_batches(images, cfg: dict, input_size: int, batch_size: int, gen, dev):
    """Pairs of views made one PIL image at a time by Lightly's SimCLRTransform (pretrain.augment: pil)."""
    # Drop the ragged last batch (a batch of one has no negatives), unless it is the only one.
    loader = DataLoader(TwoViews(images, simclr_transform(cfg, input_size)), batch_size=batch_size, shuffle=True,
                        drop_last=len(images) > batch_size, num_workers=0, generator=gen)

    def epoch():
        for views in loader:
            yield views[0].to(dev), views[1].to(dev)
    return epoch, len(loader)


def device_batches(images, cfg: dict, input_size: int, batch_size: int, gen, dev):
    """Pairs of views made a batch at a time on the model's device (pretrain.augment: batched): the
    frames live there, the order comes from the seeded generator, the views from BatchedViews."""
    from maskinspect.model.augment import BatchedViews

    frames = torch.from_numpy(np.ascontiguousarray(getattr(images, "images", images))).to(dev)  # Frames: all at once
    views = BatchedViews(cfg["transform"], input_size, cfg["seed"], dev)
    full = len(images) // batch_size if len(images) > batch_size else 1  # the ragged last batch dropped

    def epoch():
        order = torch.randperm(len(images), generator=gen).to(dev)
        for b in range(full):
            yield views(frames[order[b * batch_size:(b + 1) * batch_size]])
    return epoch, full


def pretrain(backbone: nn.Module, images, cfg: dict, model_cfg: dict,
             dev: torch.device | None = None) -> PretrainResult:
    """Train `backbone` in place with SimCLR on `images` for cfg['epochs'] epochs (on `dev`, by
    default the GPU where there is one). `images`: uint8 NHWC frames, an array or the frame
    store's Frames (then `pil` reads a frame at a time from the files, `batched` all at once)."""
    from lightly.loss import NTXentLoss

    gen = seed_everything(cfg["seed"])
    dev = dev or device()
    # channels_last: about 30 % faster convolutions on the CPU, same results.
    model = SimCLR(backbone, model_cfg["features"], cfg["projection"]["hidden_dim"],
                   cfg["projection"]["output_dim"]).to(dev, memory_format=torch.channels_last)
    batch_size = min(cfg["batch_size"], len(images))
    make = device_batches if cfg["augment"] == "batched" else pil_batches
    epoch_batches, steps = make(images, cfg, model_cfg["input_size"], batch_size, gen, dev)
    criterion = NTXentLoss(temperature=cfg["temperature"])
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                weight_decay=cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg["epochs"] * steps))
    losses: list[float] = []
    bar = progress(range(cfg["epochs"]), desc="pretrain")
    for _epoch in bar:
        model.train()
        total, batches = 0.0, 0
        for v0, v1 in epoch_batches():
            x0 = v0.contiguous(memory_format=torch.channels_last)
            x1 = v1.contiguous(memory_format=torch.channels_last)
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

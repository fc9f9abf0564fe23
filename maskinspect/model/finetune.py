"""Supervised fine-tuning of the classifier on the labelled frames.

Default (the published recipe): the pretrained backbone frozen, a linear head trained
with class-weighted cross-entropy, SGD with momentum 0.9 and weight decay 5e-4, head
learning rate 1.0, 100 epochs, batch 200, augmentation by colour jitter 0.25, random
resized crop (scale 0.9-1) and horizontal and vertical flips; `augment.hue` and
`augment.rotation` are further knobs (hue jitter apart from colour jitter, random rotation). `finetune.mode: full`
trains the backbone too, with its own learning rates (finetune.full.*).

`finetune.augmenter`: `pil` augments one image at a time with torchvision and PIL on one CPU
core (the default, which the lock's figures come from); `batched` makes the same transforms a
batch at a time on the model's device (maskinspect/model/camera_augment.py): what keeps a GPU
fed, and about 4 times as fast on 2 CPU cores too (docs/scale.md).

`augment.camera` is the share of training samples that go through the camera's own input path
instead (maskinspect/device/camera.py): the same geometric and colour jitter applied to the frame at
the sensor's size, sensor noise (`augment.noise`, in 8-bit levels), RGB565 and the firmware's
aliasing bilinear down to the input; what the model then learns is what the camera feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from maskinspect import CLASSES
from maskinspect.errors import PipelineError
from maskinspect.model.models import Classifier
from maskinspect.model.training import batched_forward, device, progress, seed_everything


def colour_jitter(aug: dict):
    """The colour jitter of `aug`, or None when it jitters nothing. Hue null: as published, the
    hue jitters as much as the rest (at most 0.5)."""
    from torchvision import transforms as T

    cj = aug["color_jitter"]
    hue = min(0.5, cj) if aug["hue"] is None else aug["hue"]
    return T.ColorJitter(brightness=cj, contrast=cj, saturation=cj, hue=hue) if cj > 0 or hue > 0 else None


def augmentation(aug: dict, input_size: int, to_tensor: bool = True):
    from torchvision import transforms as T

    steps = []
    if aug["rotation"]:
        steps.append(T.RandomRotation(aug["rotation"], interpolation=T.InterpolationMode.BILINEAR))
    steps.append(T.RandomResizedCrop(input_size, scale=(aug["min_scale"], 1.0), antialias=True))
    if aug["hflip"]:
        steps.append(T.RandomHorizontalFlip())
    if aug["vflip"]:
        steps.append(T.RandomVerticalFlip())
    colour = colour_jitter(aug)
    if colour is not None:
        steps.append(colour)
    if to_tensor:
        steps.append(T.ToTensor())
    return T.Compose(steps)


class CameraPath:
    """A sensor-size frame moved as the others are (rotation, crop, flips), with sensor noise, then
    what the firmware makes of it at the model's input, as the float model's [0, 1] CHW tensor.
    The colour jitter is applied at the input size and the pixels go through RGB565 again: the
    same lighting change at a fourteenth of the cost of jittering 240 x 240 frames."""

    def __init__(self, aug: dict, input_size: int):
        from maskinspect.device.camera import SENSOR

        self.move = augmentation({**aug, "color_jitter": 0.0, "hue": 0.0}, SENSOR, to_tensor=False)
        self.colour = colour_jitter(aug)
        self.noise = aug["noise"]
        self.input_size = input_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from maskinspect.device.camera import camera_pixels, rgb565

        frame = np.asarray(self.move(image), dtype=np.float32)
        if self.noise:
            frame = frame + torch.randn(frame.shape).numpy() * self.noise
        frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        pixels = camera_pixels(frame[None], self.input_size)[0]
        if self.colour is not None:
            pixels = rgb565(np.asarray(self.colour(Image.fromarray(pixels))))
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)


class Labelled(Dataset):
    """Training frames with their targets; with sensor-size frames too, a share of the samples
    goes through the camera's input path instead of the stored frame's augmentation."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform, camera: np.ndarray | None = None,
                 camera_transform=None, camera_share: float = 0.0):
        self.images, self.targets, self.transform = images, targets, transform
        self.camera, self.camera_transform, self.camera_share = camera, camera_transform, camera_share

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if self.camera is not None and self.camera_share > 0 and float(torch.rand(1)) < self.camera_share:
            return self.camera_transform(Image.fromarray(np.asarray(self.camera[i]))), int(self.targets[i])
        return self.transform(Image.fromarray(np.asarray(self.images[i]))), int(self.targets[i])


class DeviceBatches:
    """The training batches of an epoch made on the model's device (finetune.augmenter: batched):
    the frames are copied there once, each batch is augmented there in a few tensor operations
    (maskinspect/model/camera_augment.py). The order is a seeded shuffle each epoch, as the
    DataLoader's; the augmentation draws from its own generator on the device."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, camera: np.ndarray | None, aug: dict,
                 input_size: int, batch_size: int, seed: int, gen: torch.Generator, dev: torch.device):
        from maskinspect.model.camera_augment import BatchedAugment

        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(dev)
        self.camera = torch.from_numpy(np.ascontiguousarray(camera)).to(dev) if camera is not None else None
        self.targets = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(dev)
        self.augment = BatchedAugment(aug, input_size, seed, dev)
        self.share, self.batch_size, self.gen = aug["camera"], batch_size, gen

    def __len__(self) -> int:
        return -(-len(self.targets) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.targets), generator=self.gen).to(self.targets.device)
        for idx in order.split(self.batch_size):
            sensor = self.camera[idx] if self.camera is not None else None
            yield self.augment(self.images[idx], sensor, self.share), self.targets[idx]


def class_weights(targets: np.ndarray, num_classes: int = len(CLASSES), bad_weight: float = 1.0) -> torch.Tensor:
    """n / (k * count_c): each class weighs as much as the others in the loss; `bad` then times
    bad_weight, since on the line a missed defect costs more than a false alarm."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    missing = [CLASSES[i] for i in range(num_classes) if counts[i] == 0]
    if missing:
        raise PipelineError(f"no training frames labelled {', '.join(missing)}: the classifier cannot learn "
                            f"{'it' if len(missing) == 1 else 'them'} (label more frames or raise select.n)")
    weights = len(targets) / (num_classes * counts)
    weights[CLASSES.index("bad")] *= bad_weight
    return torch.tensor(weights, dtype=torch.float32)


@dataclass
class FinetuneResult:
    curve: list[dict]   # per epoch: epoch, loss, accuracy (the augmented training batches) and, given
    device: str         # frames to watch, test_loss and test_accuracy (those frames, unaugmented)


def watch(model: Classifier, frames: np.ndarray, targets: np.ndarray, input_size: int, dev) -> dict:
    """Loss and accuracy on frames the model does not train on, in eval mode: shown beside the
    training curve, never used to choose anything (so no randomness is drawn and no weight moves)."""
    logits = torch.from_numpy(batched_forward(model, frames, input_size, 256, dev))
    y = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    return {"test_loss": float(nn.functional.cross_entropy(logits, y)),
            "test_accuracy": float((logits.argmax(1) == y).float().mean())}


def finetune(model: Classifier, images: np.ndarray, targets: np.ndarray, cfg: dict, input_size: int,
             camera: np.ndarray | None = None, watched: tuple[np.ndarray, np.ndarray] | None = None) -> FinetuneResult:
    """Train `model` on the frames (and, with augment.camera > 0, on `camera`: the same frames at
    the sensor's size, in the same order); `watched`: (frames, targets) scored after each epoch."""
    gen = seed_everything(cfg["seed"])
    dev = device()
    model.to(dev)
    frozen = cfg["mode"] == "frozen"
    if frozen:
        for p in model.features.parameters():
            p.requires_grad_(False)
        groups = [{"params": model.classifier.parameters(), "lr": cfg["frozen"]["lr_head"]}]
    else:
        groups = [{"params": model.classifier.parameters(), "lr": cfg["full"]["lr_head"]},
                  {"params": model.features.parameters(), "lr": cfg["full"]["lr_backbone"]}]
    optimizer = torch.optim.SGD(groups, momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    aug = cfg["augment"]
    batch_size = min(cfg["batch_size"], len(images))
    if cfg["augmenter"] == "batched":
        loader = DeviceBatches(images, targets, camera, aug, input_size, batch_size, cfg["seed"], gen, dev)
    else:
        data = Labelled(images, targets, augmentation(aug, input_size), camera, CameraPath(aug, input_size),
                        aug["camera"])
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=0, generator=gen)
    steps = cfg["epochs"] * len(loader)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
                 if cfg["schedule"] == "cosine" else None)
    weights = class_weights(targets, bad_weight=cfg["bad_weight"]) if cfg["class_weighted"] else None
    criterion = nn.CrossEntropyLoss(weight=weights.to(dev) if weights is not None else None)
    curve = []
    bar = progress(range(cfg["epochs"]), desc="finetune")
    for epoch in bar:
        model.train()
        if frozen:
            model.features.eval()  # frozen means frozen BatchNorm statistics too
        total, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            total += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        curve.append({"epoch": epoch + 1, "loss": total / seen, "accuracy": correct / seen,
                      **(watch(model, *watched, input_size, dev) if watched is not None else {})})
        bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}", acc=f"{curve[-1]['accuracy']:.3f}", refresh=False)
    model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return FinetuneResult(curve=curve, device=str(dev))


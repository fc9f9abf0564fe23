"""Labelled image folders (<dir>/<class>/*.jpg, the published layout) as frames: the
images source's counterpart of video decoding."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import PipelineError


def read_labelled_folder(folder: str | Path, classes: Sequence[str]) -> list[tuple[Path, str]]:
    """(image path, class) for `<folder>/<class>/*.<image ext>`, sorted; errors name the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such folder of labelled images (<folder>/<class>/*.jpg)")
    items: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise PipelineError(f"{entry}: expected only class folders ({', '.join(classes)}) in {folder}")
        if entry.name not in classes:
            raise PipelineError(f"{entry}: unknown class folder {entry.name!r} (classes are {', '.join(classes)})")
        for image in sorted(entry.iterdir()):
            if image.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".ppm"):
                items.append((image, entry.name))
    if not items:
        raise PipelineError(f"{folder}: no images in its class folders")
    stems = [p.stem for p, _ in items]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise PipelineError(f"{folder}: image name {dup} appears in two class folders")
    return items


def load_image(path: Path, size: int, crop: str) -> np.ndarray:
    """An image file as the camera would deliver it at `size`: centre square (or squashed),
    scaled with an antialiasing filter (Pillow's bicubic, which is also how the published
    figures were measured: it reproduces them exactly), RGB uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise PipelineError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    if crop == "center" and img.width != img.height:
        side = min(img.width, img.height)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)

"""Labelled image folders (<dir>/<class>/*.jpg, the published layout) as frames: the
images source's counterpart of video decoding."""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from maskinspect.errors import PipelineError

PUBLISHED_NAME = re.compile(r"^(?P<video>.+)-(?P<frame>\d+)$")  # A-12430: video A, frame 12430


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


def _read_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise PipelineError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _centre_square(img):
    side = min(img.width, img.height)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def load_image(path: Path, size: int, crop: str) -> np.ndarray:
    """An image file as the camera would deliver it at `size`: centre square (or squashed),
    scaled with an antialiasing filter (Pillow's bicubic, which is also how the published
    figures were measured: it reproduces them exactly), RGB uint8."""
    from PIL import Image

    img = _read_rgb(path)
    if crop == "center" and img.width != img.height:
        img = _centre_square(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def load_sensor_image(path: Path, size: int) -> np.ndarray:
    """An image file as the camera's sensor window would hold it: the centred square, scaled
    with area averaging (as light falls on the sensor's pixels) to size x size."""
    from PIL import Image

    img = _centre_square(_read_rgb(path))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def without_test_images(items, test_items, folder: Path, test_folder: Path):
    """Training images minus any that is also a test image (same bytes): a frame seen in
    training says nothing when tested. The published train/ and dev/ share one (C-10352)."""
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    test_digests = {digest(path) for path, _ in test_items}
    test_names = {path.stem: path for path, _ in test_items}
    kept = []
    for path, label in items:
        if digest(path) in test_digests:
            print(f"pack_images: {path} is also in {test_folder}: left out of training", file=sys.stderr)
            continue
        if path.stem in test_names:
            raise PipelineError(f"{path}: a different image of the same name is in {test_folder} "
                                f"({test_names[path.stem]}); frame names must be unique")
        kept.append((path, label))
    return kept


def index_rows(items) -> list[tuple]:
    """Frame index rows (frame_id, video, frame, time) of labelled images. Video and frame number
    from published-style names keep near-duplicate frames of one video together in
    cross-validation; other names are their own group."""
    rows = []
    for n, (path, _) in enumerate(items):
        m = PUBLISHED_NAME.match(path.stem)
        video, frame = (m["video"], int(m["frame"])) if m else (path.stem, n)
        rows.append((path.stem, video, frame, ""))
    return rows

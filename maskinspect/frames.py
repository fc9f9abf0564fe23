"""The frame store: one shard per video, `<name>.npy` (N x S x S x 3 uint8) plus
`<name>.csv` (frame_id, video, frame, time).

Tens of thousands of frames stay a handful of files, which DVC hashes in a blink
and which numpy memory-maps, instead of one tracked file per frame.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import save_npy, write_csv
from .errors import PipelineError
from .naming import frame_id

INDEX_HEADER = ("frame_id", "video", "frame", "time")


@dataclass
class Frames:
    """Frames of one or more shards, in shard order then frame order."""
    images: np.ndarray       # (n, s, s, 3) uint8
    ids: list[str]
    videos: list[str]
    numbers: list[int]
    times: list[float | None]

    def __len__(self) -> int:
        return len(self.ids)

    def position(self) -> dict[str, int]:
        return {fid: i for i, fid in enumerate(self.ids)}

    def take(self, ids: Sequence[str], what: str = "frame") -> np.ndarray:
        """Images of `ids`, in that order; a missing id is an error naming it."""
        pos = self.position()
        missing = [i for i in ids if i not in pos]
        if missing:
            raise PipelineError(f"{what} {missing[0]} is not among the extracted frames "
                                f"({len(missing)} missing)")
        return self.images[[pos[i] for i in ids]]


def write_shard(npy_path: str | Path, csv_path: str | Path, video: str, images: np.ndarray,
                numbers: Sequence[int], times: Sequence[float | None]) -> None:
    """Write a shard; the index is written last, so a complete index means a complete shard."""
    save_npy(npy_path, images)
    rows = [(frame_id(video, n), video, n, "" if t is None else f"{t:.6f}") for n, t in zip(numbers, times)]
    write_csv(csv_path, INDEX_HEADER, rows)


def read_index(csv_path: str | Path) -> list[dict]:
    path = Path(csv_path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != INDEX_HEADER:
                raise PipelineError(f"{path}: not a frame index (header {reader.fieldnames}, expected {INDEX_HEADER})")
            return list(reader)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None


def load_shards(npy_paths: Sequence[str | Path], mmap: bool = True) -> Frames:
    """Load shards `<x>.npy` with their indexes `<x>.csv`, checking that they agree."""
    images, ids, videos, numbers, times = [], [], [], [], []
    for npy in map(Path, npy_paths):
        index_path = npy.with_suffix(".csv")
        rows = read_index(index_path)
        try:
            arr = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{npy}: not a frame shard ({exc})") from None
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] != len(rows):
            raise PipelineError(f"{npy}: shape {arr.shape} {arr.dtype} does not match its index "
                                f"({len(rows)} frames of uint8 RGB)")
        images.append(arr)
        for row in rows:
            ids.append(row["frame_id"])
            videos.append(row["video"])
            numbers.append(int(row["frame"]))
            times.append(float(row["time"]) if row["time"] else None)
    if not images:
        raise PipelineError("no frame shards given")
    sizes = {a.shape[1:] for a in images}
    if len(sizes) > 1:
        raise PipelineError(f"frame shards have different frame sizes: {sorted(sizes)}")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise PipelineError(f"frame id {dup} appears in more than one shard (two videos with one name?)")
    stacked = np.concatenate([np.asarray(a) for a in images]) if len(images) > 1 else np.asarray(images[0])
    return Frames(images=stacked, ids=ids, videos=videos, numbers=numbers, times=times)

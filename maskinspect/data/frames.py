"""The frame store: one shard per video, `<name>.npy` (N x S x S x 3 uint8) plus
`<name>.csv` (frame_id, video, frame, time).

Tens of thousands of frames stay a handful of files, which DVC hashes in a blink
and which numpy memory-maps, instead of one tracked file per frame.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from maskinspect.atomic import save_npy, write_csv
from maskinspect.errors import PipelineError
from maskinspect.data.naming import frame_id

INDEX_HEADER = ("frame_id", "video", "frame", "time")


@dataclass
class Frames:
    """Frames of one or more shards, in shard order then frame order. The shards stay
    memory-mapped: `rows` and `take` read only the frames asked for, and `images` (every frame
    as one array) is read once, on first use, straight from the files into that array (copying
    through the maps would hold each frame twice at the peak)."""
    shards: list[np.ndarray]     # each (n_i, s, s, 3) uint8, memory-mapped
    paths: list[Path]
    ids: list[str]
    videos: list[str]
    numbers: list[int]
    times: list[float | None]
    _images: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def images(self) -> np.ndarray:
        """Every frame, (n, s, s, 3) uint8: a shard's own map when there is one shard."""
        if self._images is None:
            self._images = self.shards[0] if len(self.shards) == 1 else _read_all(self.paths, self.shards)
        return self._images

    def __getitem__(self, position: int) -> np.ndarray:
        """One frame, read from its shard's file (pread). A pass over every frame this way keeps
        what it read in the page cache, not in this process: through the maps, or in `images`, a
        pass over 60,000 frames holds all 700 MB of them (pretrain, docs/scale.md)."""
        position = int(position)
        if not 0 <= position < len(self.ids):
            raise IndexError(f"frame {position} of {len(self.ids)}")
        for path, shard in zip(self.paths, self.shards):
            if position < len(shard):
                size = int(np.prod(shard.shape[1:]))
                with open(path, "rb", buffering=0) as f:
                    data = os.pread(f.fileno(), size, shard.offset + position * size)
                if len(data) != size:
                    raise PipelineError(f"{path}: shorter than its header says")
                return np.frombuffer(data, np.uint8).reshape(shard.shape[1:])
            position -= len(shard)
        raise AssertionError("unreachable: the position was checked against the shards' lengths")

    def rows(self, positions: Sequence[int]) -> np.ndarray:
        """The frames at these positions, in that order, read from the shards (only those frames)."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), *self.shards[0].shape[1:]), np.uint8)
        starts = np.cumsum([0] + [len(a) for a in self.shards])
        which = np.searchsorted(starts, positions, side="right") - 1
        for s, shard in enumerate(self.shards):
            here = np.flatnonzero(which == s)
            if len(here):
                out[here] = shard[positions[here] - starts[s]]
        return out

    def position(self) -> dict[str, int]:
        return {fid: i for i, fid in enumerate(self.ids)}

    def take(self, ids: Sequence[str], what: str = "frame") -> np.ndarray:
        """Images of `ids`, in that order; a missing id is an error naming it."""
        pos = self.position()
        missing = [i for i in ids if i not in pos]
        if missing:
            raise PipelineError(f"{what} {missing[0]} is not among the extracted frames "
                                f"({len(missing)} missing)")
        return self.rows([pos[i] for i in ids])


def _read_all(paths: Sequence[Path], shards: Sequence[np.ndarray]) -> np.ndarray:
    """The shards' frames in one array, read from the files (each shard's data is the .npy's tail)."""
    out = np.empty((sum(len(a) for a in shards), *shards[0].shape[1:]), np.uint8)
    at = 0
    for path, shard in zip(paths, shards):
        view = memoryview(out[at:at + len(shard)]).cast("B")
        with open(path, "rb") as f:
            f.seek(shard.offset)
            if f.readinto(view) != len(view):
                raise PipelineError(f"{path}: shorter than its header says")
        at += len(shard)
    return out


def write_shard(npy_path: str | Path, csv_path: str | Path, video: str, images: np.ndarray,
                numbers: Sequence[int], times: Sequence[float | None]) -> None:
    """Write a shard; the index is written last, so a complete index means a complete shard."""
    save_npy(npy_path, images)
    write_index(csv_path, video, numbers, times)


def write_index(csv_path: str | Path, video: str, numbers: Sequence[int], times: Sequence[float | None]) -> None:
    rows = [(frame_id(video, n), video, n, "" if t is None else f"{t:.6f}") for n, t in zip(numbers, times)]
    write_csv(csv_path, INDEX_HEADER, rows)


class ShardWriter:
    """A shard written frame by frame as they are decoded, in bounded memory: the frames go
    straight to a temporary .npy whose header is written again, with the final count, at the end
    (the header's room is reserved up front), then renamed into place (maskinspect/atomic.py).
    The bytes are those of np.save of the same array."""

    HEADER_ROOM = 128  # bytes: magic, version, length and the padded dict; np.save writes 128 for a shard

    def __init__(self, path: str | Path, size: int):
        from maskinspect.atomic import atomic_path

        self.path = path
        self.shape = (size, size, 3)
        self.count = 0
        self._atomic = atomic_path(path, suffix=".npy")
        self._tmp = self._atomic.__enter__()
        self._file = open(self._tmp, "wb")
        self._file.write(self._header(0))

    def _header(self, count: int) -> bytes:
        """numpy's own header for (count, size, size, 3) uint8: what np.save writes, whose padding
        leaves room for any count (numpy pads it for 21 digits of the first axis)."""
        import io

        from numpy.lib import format as npy

        buf = io.BytesIO()
        npy.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (count, *self.shape)})
        if len(buf.getvalue()) != self.HEADER_ROOM:
            raise ValueError(f"a shard header of {len(buf.getvalue())} bytes, not {self.HEADER_ROOM}")
        return buf.getvalue()

    def add(self, data: bytes) -> None:
        """Whole frames, raw RGB bytes."""
        try:
            self._file.write(data)
        except OSError as exc:
            raise PipelineError(f"{self.path}: cannot write ({exc.strerror})") from None
        self.count += len(data) // int(np.prod(self.shape))

    def close(self) -> None:
        """Finish the shard (header with the count) and put it in place."""
        try:
            self._file.seek(0)
            self._file.write(self._header(self.count))
            self._file.close()
        except OSError as exc:
            self.abandon(exc)
            raise PipelineError(f"{self.path}: cannot write ({exc.strerror})") from None
        except BaseException as exc:
            self.abandon(exc)
            raise
        self._atomic.__exit__(None, None, None)

    def abandon(self, exc: BaseException | None = None) -> None:
        """Leave nothing behind (a failed decode, an interrupt)."""
        if not self._file.closed:
            self._file.close()
        try:
            self._atomic.__exit__(type(exc) if exc else RuntimeError, exc or RuntimeError("abandoned"), None)
        except BaseException:  # noqa: BLE001 - the caller raises its own error
            pass


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
        if (arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or arr.shape[0] != len(rows)
                or not arr.flags.c_contiguous):
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
    return Frames(shards=images, paths=[Path(p) for p in npy_paths], ids=ids, videos=videos, numbers=numbers,
                  times=times, _images=None if mmap else np.concatenate(images))

"""Atomic writes: every output appears under its final name complete, or not at all, and a stage
that fails leaves every output as it was before it started.

- Each file is written to a temporary name beside its final one and renamed into place
  (os.replace is atomic on POSIX within one filesystem): an interrupted write never leaves a
  half-written artifact that looks finished.
- Within `stage_outputs()` (the stage runner opens one around every stage), the previous
  version of each replaced output is kept (a hard link, no copy) until the stage ends: when it
  fails (bad input, an interrupt, a full disk, an input edited while it ran), every output it
  had already replaced is put back. So a stage's outputs change together or not at all.
- A write that fails for lack of space (or any other OS error) is one line naming the file.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from maskinspect.errors import PipelineError


class _Replaced:
    """The outputs one stage has replaced so far, with what was there before."""

    def __init__(self) -> None:
        self.previous: dict[Path, Path | None] = {}   # final -> kept previous version (None: new file)

    def keep(self, final: Path) -> None:
        if final in self.previous:
            return
        if not final.exists():
            self.previous[final] = None
            return
        kept = final.parent / f".{final.name}.previous"
        _remove(kept)
        if final.is_dir():
            os.replace(final, kept)  # a folder cannot be hard-linked: moved aside instead
        else:
            os.link(final, kept)
        self.previous[final] = kept

    def roll_back(self) -> None:
        for final, kept in reversed(list(self.previous.items())):
            _remove(final)
            if kept is not None:
                os.replace(kept, final)

    def forget(self) -> None:
        for kept in self.previous.values():
            if kept is not None:
                _remove(kept)


_stage: _Replaced | None = None


@contextlib.contextmanager
def stage_outputs() -> Iterator[None]:
    """All outputs written inside the block are kept if it ends normally and put back as they
    were if it raises (KeyboardInterrupt and SystemExit included)."""
    global _stage
    outer, _stage = _stage, _Replaced()
    replaced = _stage
    try:
        yield
    except BaseException:
        replaced.roll_back()
        raise
    else:
        replaced.forget()
    finally:
        _stage = outer


@contextlib.contextmanager
def kept_on_failure() -> Iterator[None]:
    """Writes inside the block stay even if the stage then fails: what a failing stage leaves
    for a person on purpose (the frames annotate asks to be labelled)."""
    global _stage
    outer, _stage = _stage, None
    try:
        yield
    finally:
        _stage = outer


def clear_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what a killed stage may have left beside an output: its temporary files and a
    kept previous version (the stage runs again, so neither is needed). Returns what was removed."""
    final = Path(path)
    if not final.parent.is_dir():
        return []
    found = [*final.parent.glob(f".{final.name}.*.tmp*"), final.parent / f".{final.name}.previous"]
    removed = [p for p in found if p.exists() or p.is_symlink()]
    for p in removed:
        _remove(p)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` when the block succeeds.

    `suffix` keeps an extension some tools need (ffmpeg picks the muxer from it).
    A directory written at the temporary path replaces an existing directory.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
        os.close(fd)
    except OSError as exc:
        raise PipelineError(f"{final}: cannot write ({exc.strerror})") from None
    tmp = Path(tmp_name)
    tmp.unlink()  # the caller creates it (file or directory)
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"{tmp} was not written")
            if tmp.is_file():
                tmp.chmod(0o666 & ~_umask())  # mkstemp makes files private; outputs are ordinary files
            if _stage is not None:
                _stage.keep(final)
            if tmp.is_dir() and final.exists():
                _remove(final)
            os.replace(tmp, final)
        except Exception as exc:  # noqa: BLE001 - writers report a full disk in many shapes
            if _disk_full(exc, final.parent):
                raise PipelineError(f"{final}: cannot write (No space left on device)") from None
            if isinstance(exc, OSError) and exc.strerror is not None and exc.filename is None:
                raise PipelineError(f"{final}: cannot write ({exc.strerror})") from None
            raise
    finally:
        if tmp.exists():
            _remove(tmp)


def _disk_full(exc: Exception, folder: Path) -> bool:
    """Whether a failed write ran out of space: writers say so in many shapes (an OSError with
    errno 28, a library's own error quoting it, numpy's "N requested and M written"), so the
    folder's free space, measured while the partial file still holds it, decides too."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc):
        return True
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 16 * 1024


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    """Stable JSON: sorted keys, fixed indentation, trailing newline."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    write_text(path, csv_text(header, rows))


def save_npy(path: str | os.PathLike, array) -> None:
    """np.save is byte-stable (no timestamps), unlike np.savez."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)

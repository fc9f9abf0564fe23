"""Sending what C libraries print (to file descriptors 1 and 2) somewhere else for a while.

TensorFlow and onnx2tf print pages of tensor specs from C and Python even when asked not to,
and TFLite Micro prints every failed allocation of an arena search: the stages print their own
one-line summaries instead. The descriptors are put back however the block ends.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def redirected(to: Path | None = None, fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Within the block, `fds` write to the file `to` (or are discarded when it is None)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    sink = open(to, "wb") if to is not None else tempfile.TemporaryFile()
    try:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        sink.close()

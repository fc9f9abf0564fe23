"""What every stage script shares: one-line errors, params loading, thread pinning."""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable

from .errors import PipelineError


def stage(name: str) -> Callable:
    """Decorate a stage's main(argv): a PipelineError becomes one line on stderr and exit 1.

    Anything else is a bug in this project and keeps its traceback.
    """
    def wrap(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv) or 0
            except PipelineError as exc:
                print(f"{name}: error: {exc}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"{name}: interrupted; no output was left half-written", file=sys.stderr)
                return 130
        return run
    return wrap


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(description or "").strip().split("\n\n")[0])
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    return p


def pin_threads(threads: int) -> None:
    """Fix torch's thread count: float reductions, hence the bytes of the weights, depend on it."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass

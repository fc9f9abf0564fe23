"""The stage runner: what every stage script shares.

    @cli.stage("finetune")
    def main(args, params): ...

gives the script an argument parser made from the stage's declaration (one `--<role>` per
input and output in maskinspect/workflow/stages.py, `--params`, `--log`), and runs `main` so that:

- params.yaml is validated first (a bad key is one line naming it, before anything is touched);
- what the stage prints also goes to `--log` (logs/<stage>/..., kept, git-ignored);
- in a checkout, it holds the stage lock, and refuses to run beside a Snakemake build that did
  not start it (maskinspect/workflow/locks.py);
- its outputs change together or not at all: a failure (bad input, an interrupt or SIGTERM, a
  full disk) puts back every output it had already replaced (maskinspect/atomic.py);
- an input edited while it ran is an error, and its outputs stay as they were;
- a problem the user can fix is one line, `<stage>: error: <file or key>: <what is wrong>`, and
  exit 1; anything else is a bug in this project and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from maskinspect.workflow import params as params_mod
from maskinspect.errors import EXIT_LABELS_NEEDED, LabelsNeeded, PipelineError
from maskinspect.workflow.declare import Folder, Shards, Stage, flag, is_many, is_optional
from maskinspect.workflow.stages import BY_NAME


def parser(decl: Stage) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=decl.script, description=decl.doc)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file (default: params.yaml)")
    for direction, role, value in decl.roles():
        what = ("frame shards (.npy, each with its .csv index beside it)" if isinstance(value, Shards)
                else "a folder" if isinstance(value, Folder) else "files" if is_many(value) else "a file")
        p.add_argument(flag(role), dest=role, type=Path, nargs="+" if is_many(value) else None,
                       required=not is_optional(value),
                       help=f"{'input' if direction == 'in' else 'output'}: {what}")
    for option in decl.options:
        p.add_argument(flag(option), dest=option, required=True)
    for name in decl.flags:
        p.add_argument(flag(name), dest=name, action="store_true")
    p.add_argument("--log", type=Path, help="also write what the stage prints to this file")
    return p


def stage(name: str) -> Callable:
    """Decorate a stage script's `main(args, params)`; see the module docstring."""
    decl = BY_NAME[name]

    def wrap(main: Callable) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            args = parser(decl).parse_args(argv)
            with _logged_to(args.log), _terminate_as_interrupt(), _benchmarked(decl, args):
                return _run(decl, main, args)
        return run
    return wrap


def tool(name: str) -> Callable:
    """Decorate a helper script's `main(argv)` (not a stage): one-line errors, exit 1."""
    def wrap(main: Callable) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv) or 0
            except PipelineError as exc:
                print(f"{name}: error: {exc}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"{name}: interrupted", file=sys.stderr)
                return 130
        return run
    return wrap


def _run(decl: Stage, main: Callable, args: argparse.Namespace) -> int:
    from maskinspect import atomic
    from maskinspect.workflow.locks import StageLock

    try:
        params = params_mod.load(args.params)
        root = Path.cwd()
        in_checkout = (root / "Snakefile").is_file() and (root / "maskinspect" / "workflow").is_dir()
        with StageLock(root, decl.name) if in_checkout else contextlib.nullcontext():
            if decl.threads:
                pin_threads(params["runtime"]["threads"])
            for path in output_files(decl, args):
                atomic.clear_leftovers(path)
            inputs = input_files(decl, args)
            before = {p: _stat(p) for p in inputs}
            with atomic.stage_outputs():
                result = main(args, params)
                changed = [p for p in inputs if _stat(p) != before[p]]
                if changed:
                    raise PipelineError(f"{changed[0]}: changed while {decl.name} ran; the stage's outputs were "
                                        f"left as they were (run it again)")
        return result or 0
    except LabelsNeeded as stop:  # a normal step, not a failure: the screen says what to do
        print(stop.screen, file=sys.stderr)
        return EXIT_LABELS_NEEDED
    except PipelineError as exc:
        print(f"{decl.name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{decl.name}: interrupted; its outputs were left as they were", file=sys.stderr)
        return 130


def input_files(decl: Stage, args: argparse.Namespace) -> list[Path]:
    """Every file the stage reads (a shard's index and a folder's files included)."""
    files = [Path(args.params)]
    for direction, role, value in decl.roles():
        given = getattr(args, role)
        if direction != "in" or given is None:
            continue
        for path in (given if isinstance(given, list) else [given]):
            if isinstance(value, Shards):
                files += [path, path.with_suffix(".csv")]
            elif path.is_dir():
                files += [f for f in sorted(path.rglob("*"))
                          if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)]
            else:
                files.append(path)
    return [f for f in files if f.exists()]


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _own_peak_kb() -> int:
    """This process's peak resident memory: VmHWM, where Linux has it. ru_maxrss carries the
    parent's peak across a vfork and exec, so a stage started by DVC would report DVC's."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@contextlib.contextmanager
def _benchmarked(decl: Stage, args: argparse.Namespace):
    """Under DVC, record the stage's wall time and peak memory where Snakemake's `benchmark:` would
    (benchmarks/<stage>/...tsv, in its format): a stage DVC built has its figures too, and the file
    is as new as the outputs, as Snakemake expects of it."""
    if not os.environ.get("DVC_STAGE") or args.log is None:
        yield
        return
    import resource
    import time

    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        peak_kb = max(_own_peak_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        item = args.log.stem if decl.foreach else None
        target = Path(decl.benchmark(item))
        hms = time.strftime("%H:%M:%S", time.gmtime(seconds))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(BENCHMARK_HEADER + f"{seconds:.4f}\t{hms}\t{peak_kb / 1024:.2f}\tNA\tNA\tNA\tNA\tNA\t"
                                                 f"NA\t{time.process_time() - cpu:.2f}\n")
        except OSError:
            pass  # figures never stop a stage


def output_files(decl: Stage, args: argparse.Namespace) -> list[Path]:
    files = []
    for direction, role, _value in decl.roles():
        given = getattr(args, role)
        if direction == "out" and given is not None:
            files += given if isinstance(given, list) else [given]
    return files


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM and SIGHUP (a build stopping its jobs, a closed terminal) end the stage as Ctrl-C does,
    so its outputs are put back."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _logged_to(log: Path | None):
    """Copy everything written to fds 1 and 2 (Python's and C libraries' alike) to `log` too."""
    if log is None:
        yield
        return
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        sink = open(log, "wb")
    except OSError:
        yield  # a log that cannot be written never stops a stage
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    pumps = []
    for fd in (1, 2):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        pump = threading.Thread(target=_pump, args=(read_end, saved[fd], sink), daemon=True)
        pump.start()
        pumps.append(pump)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)  # closes the pipe's last write end: the pumps see its end
        for pump in pumps:
            pump.join(timeout=10)
        for fd in saved.values():
            os.close(fd)
        sink.close()


def _pump(read_end: int, terminal: int, sink) -> None:
    lock = _PUMP_LOCK
    with os.fdopen(read_end, "rb", buffering=0) as source:
        for chunk in iter(lambda: source.read(65536), b""):
            with lock:
                for write in (lambda: os.write(terminal, chunk), lambda: (sink.write(chunk), sink.flush())):
                    try:
                        write()
                    except OSError:
                        pass  # a closed terminal or a full disk: the stage goes on


_PUMP_LOCK = threading.Lock()


def pin_threads(threads: int) -> None:
    """Fix torch's thread count: float reductions, hence the bytes of the weights, depend on it."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass

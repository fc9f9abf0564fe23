"""`maskinspect`: the project's command for the questions a person asks of it.

    maskinspect check MODEL.tflite      is this model safe for the camera: gates, size, arena, firmware, latency
    maskinspect emulate BUNDLE VIDEO    the bundle's own main.py on a video through the emulated camera
    maskinspect label [--port N]        the labelling page for the frames the annotate stage asks for
    maskinspect status                  which stages are stale and why, as Snakemake and DVC see it
    maskinspect checkout [TARGET ...]   dvc checkout, every cache object verified first
    maskinspect push / pull [-r NAME]   dvc push / pull, each problem said in one line
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from .errors import PipelineError


def _checkout(args: argparse.Namespace) -> int:
    """Verify the DVC cache objects dvc.lock names (a corrupted one is named, removed from the
    cache and never checked out), then check the workspace out from the cache."""
    from dvc.repo import Repo
    from dvc_data.hashfile.db import HashFileDB  # noqa: F401 - the cache's type
    from dvc_objects.errors import ObjectFormatError

    root = Path(args.repo).resolve()
    corrupted = []
    with Repo(str(root)) as repo:
        odb = repo.cache.local
        for out in repo.index.outs:
            if not out.use_cache or not out.hash_info or not out.hash_info.value:
                continue
            oids = [out.hash_info.value]
            if out.hash_info.isdir:
                try:
                    tree = out.get_obj()
                    oids += [entry.hash_info.value for _key, _meta, entry in tree] if tree else []
                except (FileNotFoundError, ObjectFormatError):
                    pass
            for oid in oids:
                try:
                    odb.check(oid)
                except FileNotFoundError:
                    continue  # not in the cache: dvc checkout says so itself
                except ObjectFormatError:
                    corrupted.append(out.def_path)
                    break
        for path in corrupted:
            print(f"maskinspect checkout: error: {path}: its object in the DVC cache is corrupted "
                  f"(removed from the cache; `dvc pull` fetches it again, or rebuild it)", file=sys.stderr)
        try:
            repo.checkout(targets=args.targets or None, force=args.force)
        except Exception as exc:  # noqa: BLE001 - DVC's checkout errors are many; say what it said
            if not corrupted:
                print(f"maskinspect checkout: error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
    return 1 if corrupted else 0


class _FirstError(logging.Handler):
    """Keeps DVC's first error message (it logs one per file that fails) and prints none."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.first: str | None = None

    def emit(self, record):
        if self.first is None:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" - {record.exc_info[1]}"  # the cause, as DVC's own log prints it
            self.first = message.splitlines()[0]


@contextlib.contextmanager
def _dvc_errors_kept():
    handler = _FirstError()
    loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
    saved = [(lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [handler], False
    try:
        yield handler
    finally:
        for lg, (handlers, propagate) in zip(loggers, saved):
            lg.handlers, lg.propagate = handlers, propagate


def _transfer(args: argparse.Namespace) -> int:
    """dvc push or pull; a remote that fails part-way is one line: what failed, why, and that
    what did arrive stays (DVC moves whole files: run it again to finish)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    verb = args.command
    with _dvc_errors_kept() as errors, Repo(str(Path(args.repo).resolve())) as repo:
        remote = args.remote or repo.config["core"].get("remote") or "the default remote"
        try:
            result = repo.push(remote=args.remote) if verb == "push" else repo.pull(remote=args.remote)
        except DvcException as exc:
            why = f" ({errors.first})" if errors.first and errors.first not in str(exc) else ""
            print(f"maskinspect {verb}: error: {remote}: {str(exc).splitlines()[0]}{why}; what was "
                  f"transferred stays, run it again to finish", file=sys.stderr)
            return 1
    count = result if isinstance(result, int) else sum((result or {}).get(k, 0) for k in ("added", "fetched"))
    print(f"maskinspect {verb}: {count} file(s) {'pushed to' if verb == 'push' else 'pulled from'} {remote}",
          file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    """The camera's gates and costs of any .tflite, each refusal in one line."""
    from . import params as params_mod
    from .model_check import check

    root = Path(args.repo).resolve()
    params = params_mod.load(root / "params.yaml")
    figures, refusals = check(Path(args.model), params, root, on_firmware=not args.no_firmware)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    for line in refusals:
        print(f"maskinspect check: refused: {args.model}: {line}", file=sys.stderr)
    if not refusals:
        print(f"{args.model}: fit for the camera")
    return 1 if refusals else 0


def _status(args: argparse.Namespace) -> int:
    """Stale stages, each front end's reason side by side."""
    from .status import dvc_view, snakemake_view

    root = Path(args.repo).resolve()
    (snake, notes), dvc = snakemake_view(root), dvc_view(root)
    for note in notes:
        print(f"note: {note}")
    if not snake and not dvc:
        print("up to date: Snakemake would run nothing and DVC reports no change")
        return 0
    for stage in sorted(set(snake) | set(dvc)):
        print(stage)
        print(f"  snakemake: {snake.get(stage, 'up to date')}")
        print(f"  dvc:       {dvc.get(stage, 'up to date')}")
    return 0


def _emulate(args: argparse.Namespace) -> int:
    """Per-frame class, confidence and LED of the bundle's main.py on a video; optionally a CSV
    and an MP4 with the answer drawn on each frame."""
    from collections import Counter

    from .emulate import emulate, write_answers, write_mp4
    from .training import progress

    bar = progress(None, desc="emulate", unit="frame")
    try:
        answers, header, frames, rate = emulate(Path(args.bundle), Path(args.video), args.fps, args.max_frames,
                                                args.firmware, on_progress=lambda i: bar.update(1))
    finally:
        bar.close()
    for line in header:
        print(f"# {line}")
    print(f"{'frame':>7} {'time s':>8}  {'class':<8} {'conf':>5}  led")
    for a in answers:
        print(f"{a.frame:>7} {a.time:>8.2f}  {a.label:<8} {a.confidence:>5.2f}  {a.led}")
    counts = Counter(a.label for a in answers)
    print(f"# {len(answers)} frames: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.csv:
        write_answers(Path(args.csv), answers)
        print(f"# answers written to {args.csv}")
    if args.mp4:
        write_mp4(Path(args.mp4), frames, answers, rate)
        print(f"# video with the answers drawn written to {args.mp4}")
    return 0


def _label(args: argparse.Namespace) -> int:
    """Serve the labelling page for the annotate stage's hand-off; answers go to data.labels."""
    from . import params as params_mod
    from .label_server import serve
    from .workflow.layout import VIDEO_LABELS

    root = Path(args.repo).resolve()
    params = params_mod.load(root / "params.yaml")
    labels = Path(params["data"]["labels"])
    labels = labels if labels.is_absolute() else root / labels
    folder = root / Path(VIDEO_LABELS[0]).parent / "to_label"
    try:
        serve(folder, labels, args.port, lambda line: print(f"maskinspect label: {line}", file=sys.stderr, flush=True))
    except OSError as exc:
        raise PipelineError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); try --port 0") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskinspect", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    ck = sub.add_parser("check", help="is a .tflite fit for the camera: gates, size, arena, firmware, latency")
    ck.add_argument("model", help="the .tflite file (ours, the published one, any)")
    ck.add_argument("--no-firmware", action="store_true",
                    help="skip the run on OpenMV's own libtflm on an emulated Cortex-M7 (needs the ARM toolchain and QEMU)")
    ck.add_argument("--repo", default=".", help="the checkout whose params.yaml names the firmware (default: .)")
    ck.set_defaults(run=_check)
    st = sub.add_parser("status", help="which stages are stale and why, both front ends' view (changes nothing)")
    st.add_argument("--repo", default=".", help="the checkout (default: the current folder)")
    st.set_defaults(run=_status)
    em = sub.add_parser("emulate", help="the bundle's own main.py on a video, through the emulated camera: "
                        "class, confidence and LED per frame")
    em.add_argument("bundle", help="the bundle: dist/openmv/ (main.py, model.tflite, model.txt) or dist/openmv.zip")
    em.add_argument("video", help="a video of the line (any file ffmpeg reads); each frame's centred square is "
                    "the sensor's 240 x 240 window, as main.py takes it")
    em.add_argument("--fps", type=float, help="frames per second of video to run (default: every frame)")
    em.add_argument("--max-frames", type=int, help="stop after this many frames")
    em.add_argument("--firmware", default="4.5.6", help="the firmware to emulate: 4.5.6-4.6.x leave ml.Model.labels "
                    "empty, 4.7 and later read model.txt (default 4.5.6)")
    em.add_argument("--csv", help="also write the answers here (frame, time_s, label, confidence, led)")
    em.add_argument("--mp4", help="also write the video's sensor window with the answer drawn on each frame")
    em.set_defaults(run=_emulate)
    lb = sub.add_parser("label", help="label the frames the build asks for, in a page on this machine")
    lb.add_argument("--port", type=int, default=8765, help="the port on 127.0.0.1 (default 8765; 0 picks a free one)")
    lb.add_argument("--repo", default=".", help="the checkout (default: the current folder)")
    lb.set_defaults(run=_label)
    co = sub.add_parser("checkout", help="dvc checkout, with every cache object it uses verified first")
    co.add_argument("targets", nargs="*", help="outputs or stages to check out (default: all)")
    co.add_argument("--force", action="store_true", help="replace workspace files without asking")
    co.add_argument("--repo", default=".", help="the checkout (default: the current folder)")
    co.set_defaults(run=_checkout)
    for verb in ("push", "pull"):
        cmd = sub.add_parser(verb, help=f"dvc {verb}, a failure said in one line")
        cmd.add_argument("-r", "--remote", help="the DVC remote (default: the project's, `storage`)")
        cmd.add_argument("--repo", default=".", help="the checkout (default: the current folder)")
        cmd.set_defaults(run=_transfer)
    args = p.parse_args(argv)
    try:
        return args.run(args)
    except PipelineError as exc:
        print(f"maskinspect {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

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

from maskinspect.data.strategies import STRATEGIES
from maskinspect.errors import PipelineError


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
        endpoint = repo.config.get("remote", {}).get(remote, {}).get("endpointurl")
        where = f"{remote} ({endpoint})" if endpoint else remote   # the endpoint, never a key
        try:
            result = repo.push(remote=args.remote) if verb == "push" else repo.pull(remote=args.remote)
        except (DvcException, OSError) as exc:  # a refused key, a lost connection: the storage's own words
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            why = f" ({errors.first})" if errors.first and errors.first not in said else ""
            print(f"maskinspect {verb}: error: {where}: {said}{why}; what was "
                  f"transferred stays, run it again to finish", file=sys.stderr)
            return 1
    count = result if isinstance(result, int) else sum((result or {}).get(k, 0) for k in ("added", "fetched"))
    print(f"maskinspect {verb}: {count} file(s) {'pushed to' if verb == 'push' else 'pulled from'} {remote}",
          file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    """The camera's gates and costs of any .tflite, each refusal in one line."""
    from maskinspect.workflow import params as params_mod
    from maskinspect.command.model_check import check

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
    from maskinspect.command.status import dvc_view, snakemake_view

    root = Path(args.repo).resolve()
    if not (root / "Snakefile").is_file() or not (root / "params.yaml").is_file():
        raise PipelineError(f"{root}: not a maskinspect checkout (no Snakefile and params.yaml there); "
                            f"--repo names one")
    (snake, notes), dvc = snakemake_view(root), dvc_view(root)
    stale = sorted(set(snake) | set(dvc), key=_graph_order)
    if not stale:
        print("up to date: Snakemake would run nothing and DVC reports no change")
    else:
        agree = "both front ends agree" if set(snake) == set(dvc) else "the front ends differ: see below"
        print(f"{len(stale)} stage(s) to run, first {stale[0]}; {agree}")
    for note in notes:
        print(f"note: {note}")
    for stage in stale:  # in the order the data flows
        print(stage)
        print(f"  snakemake: {snake.get(stage, 'up to date')}")
        print(f"  dvc:       {dvc.get(stage, 'up to date')}")
    return 0


def _graph_order(instance: str) -> tuple[int, str]:
    from maskinspect.workflow.stages import STAGES

    names = [st.name for st in STAGES]
    stage = instance.split("@")[0]
    return (names.index(stage) if stage in names else len(names), instance)


def _emulate(args: argparse.Namespace) -> int:
    """Per-frame class, confidence and LED of the bundle's main.py on a video; optionally a CSV
    and an MP4 with the answer drawn on each frame."""
    from collections import Counter

    from maskinspect.command.emulate import emulate, write_answers, write_mp4
    from maskinspect.model.training import progress

    for target in (args.csv, args.mp4):
        if target and Path(target).is_dir():
            raise PipelineError(f"{target}: is a folder; give a file name")
        if target and not Path(target).resolve().parent.is_dir():
            raise PipelineError(f"{target}: its folder does not exist")
    bar = progress(None, desc="emulate", unit="frame")
    try:
        run = emulate(Path(args.bundle), Path(args.video), args.fps, args.max_frames, args.firmware,
                      on_progress=lambda i: bar.update(1), trust=args.trust, timeout_s=args.timeout)
    finally:
        bar.close()
    answers, header, frames, rate = run.answers, run.header, run.frames, run.rate
    print(f"# main.py ran sandboxed: {'; '.join(run.isolation)}")
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
    from maskinspect.workflow import params as params_mod
    from maskinspect.command.label_server import serve
    from maskinspect.workflow.layout import VIDEO_LABELS

    root = Path(args.repo).resolve()
    params = params_mod.load(root / "params.yaml")
    labels = Path(params["data"]["labels"])
    labels = labels if labels.is_absolute() else root / labels
    folder = root / Path(VIDEO_LABELS[0]).parent / "to_label"
    bundle = root / "dist" / "openmv" / "model.tflite"  # once a model exists, the page shows its guesses
    try:
        serve(folder, labels, args.port, lambda line: print(f"maskinspect label: {line}", file=sys.stderr, flush=True),
              rules=params["labelling"], model=bundle if bundle.is_file() else None)
    except OSError as exc:
        raise PipelineError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); try --port 0") from None
    return 0


def _propose(args: argparse.Namespace) -> int:
    """A round of active learning: the next frames to label, as data/selection/rounds/round-NN.csv."""
    from maskinspect.command.propose import propose, say
    from maskinspect.workflow import params as params_mod

    root = Path(args.repo).resolve()
    params = params_mod.load(root / "params.yaml")
    cfg = params["rounds"]
    path, rows = propose(root, params, args.next or cfg["size"], args.strategy or cfg["strategy"])
    say(path, rows, root)
    return 0


def _positive(kind):
    """An argparse type: a number above zero, or one line naming the argument."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _firmware(text: str) -> str:
    """A firmware whose camera the emulator knows: the ml module's 4.5.6 up to 5.0 (from 5.0.0 the
    image is stretched to the input instead of centre-cropped: not emulated)."""
    import re

    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m or not (4, 5, 6) <= tuple(map(int, m.groups())) < (5, 0, 0):
        raise argparse.ArgumentTypeError(f"{text}: not a firmware the emulator knows (4.5.6 to 4.x: the ml module)")
    return text


# Each subcommand: its one-line help (the list), and the description its own --help opens with.
DESCRIPTIONS = {
    "check": ("is a .tflite fit for the camera: gates, size, arena, firmware, latency",
              "The camera's gates (ops in OpenMV's resolver, an int8 data path, the input scale and zero "
              "point the firmware feeds), model bytes and MOps, the arena the host's TensorFlow Lite Micro "
              "needs, and the model on every firmware params.yaml claims (OpenMV's own libraries on an "
              "emulated Cortex-M7): refused in the library's words, or its arena, instructions and latency. "
              "Exit 1 on any refusal, one line each."),
    "status": ("which stages are stale and why, both front ends' view (changes nothing)",
               "A one-line summary, then each stale stage in the order the data flows, with Snakemake's "
               "reason beside DVC's. Only looks: nothing outside .snakemake/ changes."),
    "emulate": ("the bundle's own main.py on a video, through the emulated camera: class, confidence and LED "
                "per frame", "Runs main.py on each frame as the camera would (its sensor window, RGB565, the "
                "firmware's scaling, TensorFlow Lite Micro), sandboxed: its own process, no network, no "
                "files outside its folder, a time limit. A main.py that is not this project's needs --trust."),
    "label": ("label the frames the build asks for, in a page on this machine",
              "Serves the labelling page for the annotate stage's hand-off on 127.0.0.1, with a token in "
              "the address it prints; every answer is saved at once into data.labels. Once a model exists, "
              "the page shows its guess for each frame."),
    "propose": ("a round of active learning: the next frames to label, chosen with the model the build made",
                "Writes the next data/selection/rounds/round-NN.csv: --next frames (rounds.size) chosen by "
                "--strategy (rounds.strategy) from the training frames not yet selected, each with the "
                "model's guess. Keep it in git; the next build asks for their labels, in that order, and "
                "rebuilds what they change. The test sample never moves."),
    "checkout": ("dvc checkout, with every cache object it uses verified first",
                 "Verifies each DVC cache object dvc.lock names (a corrupted one is named and removed, never "
                 "checked out), then checks the workspace out."),
    "push": ("dvc push, a failure said in one line", "dvc push to the remote (default: `storage`); a failure is "
             "one line naming the remote and its endpoint, never a key; what arrived stays."),
    "pull": ("dvc pull, a failure said in one line", "dvc pull from the remote (default: `storage`); a failure is "
             "one line naming the remote and its endpoint; what arrived stays."),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"maskinspect {version('maskinspect')}"
    except PackageNotFoundError:
        return "maskinspect (not installed; run it through scripts/venv.sh)"


def _subparser(sub, name: str):
    short, long = DESCRIPTIONS[name]
    return sub.add_parser(name, help=short, description=long)


def _check_args(sub) -> None:
    ck = _subparser(sub, "check")
    ck.add_argument("model", help="the .tflite file (ours, the published one, any)")
    ck.add_argument("--no-firmware", action="store_true",
                    help="skip the run on OpenMV's own libtflm on an emulated Cortex-M7 (needs the ARM toolchain and QEMU)")
    ck.add_argument("--repo", default=".", help="the checkout whose params.yaml names the firmware (default: .)")
    ck.set_defaults(run=_check)


def _emulate_args(sub) -> None:
    em = _subparser(sub, "emulate")
    em.add_argument("bundle", help="the bundle: dist/openmv/ (main.py, model.tflite, model.txt) or dist/openmv.zip")
    em.add_argument("video", help="a video of the line (any file ffmpeg reads); each frame's centred square is "
                    "the sensor's 240 x 240 window, as main.py takes it")
    em.add_argument("--fps", type=_positive(float), help="frames per second of video to run (default: every frame)")
    em.add_argument("--max-frames", type=_positive(int), help="stop after this many frames")
    em.add_argument("--firmware", default="4.5.6", type=_firmware,
                    help="the firmware to emulate, one the bundle claims: 4.5.6-4.6.x leave ml.Model.labels "
                    "empty, 4.7 and later read model.txt (default 4.5.6)")
    em.add_argument("--trust", action="store_true", help="run a main.py that is not the one this project writes "
                    "(a bundle from elsewhere); it runs sandboxed either way")
    em.add_argument("--timeout", type=_positive(float), help="stop main.py after this many seconds "
                    "(default: 60 + 0.5 a frame)")
    em.add_argument("--csv", help="also write the answers here (frame, time_s, label, confidence, led)")
    em.add_argument("--mp4", help="also write the video's sensor window with the answer drawn on each frame")
    em.set_defaults(run=_emulate)


def _repo_args(sub) -> None:
    """The subcommands that work on a checkout."""
    st = _subparser(sub, "status")
    st.set_defaults(run=_status)
    lb = _subparser(sub, "label")
    lb.add_argument("--port", type=int, default=8765, help="the port on 127.0.0.1 (default 8765; 0 picks a free one)")
    lb.set_defaults(run=_label)
    pr = _subparser(sub, "propose")
    pr.add_argument("--next", type=_positive(int), help="how many frames (default: rounds.size)")
    pr.add_argument("--strategy", choices=STRATEGIES, help="how they are chosen (default: rounds.strategy)")
    pr.set_defaults(run=_propose)
    co = _subparser(sub, "checkout")
    co.add_argument("targets", nargs="*", help="outputs or stages to check out (default: all)")
    co.add_argument("--force", action="store_true", help="replace workspace files without asking")
    co.set_defaults(run=_checkout)
    for verb in ("push", "pull"):
        cmd = _subparser(sub, verb)
        cmd.add_argument("-r", "--remote", help="the DVC remote (default: the project's, `storage`)")
        cmd.set_defaults(run=_transfer)
    for cmd in (st, lb, pr, co, *[sub.choices[v] for v in ("push", "pull")]):
        cmd.add_argument("--repo", default=".", help="the checkout (default: the current folder)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskinspect", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    _check_args(sub)
    _repo_args(sub)
    _emulate_args(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
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

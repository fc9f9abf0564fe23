"""How many labels does a model need, and does choosing the frames help? A learning curve per
strategy (maskinspect/data/strategies.py), repeated, through the camera path.

    scripts/venv.sh python benchmarks/label_efficiency.py --data real [--repeats 3] [--recipe full]
    scripts/venv.sh python benchmarks/label_efficiency.py --data demo --repeats 10   # after a demo build

real: the published frames (pins published-frames-train and -dev, 299 labelled frames), each
repeat a split by video time as crossval groups them (crossval.group_seconds): a third of the
groups for the test, the rest the pool the strategies choose from. The backbone is the recipe's
(the published SimCLR checkpoint), the embeddings its features.
demo: the default demo build's 1,200 frames, its ground truth and its pretrained backbone, the
test sample and the pool split the same way.

For each repeat, strategy and budget (10, 20, 40, 80, 160, ... as far as the pool allows) the
classifier is trained from the backbone with the recipe (`--recipe full`: params.yaml's for the
data; `--recipe linear`: the published frozen backbone and linear head, seconds a fit) and
scored on the test frames through the camera path (the sensor window, the firmware's scaling,
RGB565) and on the stored frames. The model-driven strategies choose each next batch with the
model of the budget before. Prints a markdown table (mean ± standard deviation over the repeats)
and writes every figure to --out (JSON) and a plot (--plot PNG).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskinspect import CLASSES  # noqa: E402 - pins the numerical environment first
from maskinspect.data.strategies import MODEL_DRIVEN, STRATEGIES, pick  # noqa: E402

BUDGETS = (10, 20, 40, 80, 160)


@dataclass
class Dataset:
    frames: np.ndarray      # stored frames (N, s, s, 3)
    sensor: np.ndarray      # the same at the sensor's window (N, 240, 240, 3)
    labels: np.ndarray      # class index per frame
    groups: list[str]       # video and time block
    backbone: dict          # its weights (state dict)


def real_data(params: dict) -> Dataset:
    from maskinspect.data.images import index_rows, load_image, load_sensor_image, read_labelled_folder
    from maskinspect.device.camera import SENSOR
    from maskinspect.model import models
    from maskinspect.workflow import pinned

    items = []
    for name in ("published-frames-train", "published-frames-dev"):
        items += read_labelled_folder(pinned.local(ROOT / pinned.pin_path(name)), CLASSES)
    seen, unique = set(), []
    for path, label in items:  # the one frame in both folders, once
        key = path.read_bytes()
        if key not in seen:
            seen.add(key)
            unique.append((path, label))
    size, seconds = params["frames"]["size"], params["crossval"]["group_seconds"]
    rows = index_rows(unique)
    return Dataset(frames=np.stack([load_image(p, size, params["frames"]["crop"]) for p, _ in unique]),
                   sensor=np.stack([load_sensor_image(p, SENSOR) for p, _ in unique]),
                   labels=np.array([CLASSES.index(label) for _, label in unique]),
                   groups=[f"{r[1]}/{int(r[2] / 30 // seconds)}" for r in rows],
                   backbone=models.read_any_weights(pinned.local(ROOT / pinned.pin_path("published-checkpoint"))))


def demo_data(params: dict) -> Dataset:
    import csv

    from maskinspect.data.frames import load_shards
    from maskinspect.data.video import frames_by_number
    from maskinspect.device.camera import SENSOR
    from maskinspect.model import models

    shards = sorted((ROOT / "data/frames").glob("demo-*.npy"))
    if not shards or not (ROOT / "models/backbone.safetensors").exists():
        sys.exit("label_efficiency: --data demo needs a demo build here (scripts/venv.sh snakemake --cores all)")
    frames = load_shards(shards)
    truth = {r["frame_id"]: r["label"] for r in csv.DictReader((ROOT / "data/demo/truth.csv").open())}
    sensor = []
    for video in sorted(set(frames.videos)):
        numbers = [n for v, n in zip(frames.videos, frames.numbers) if v == video]
        got = frames_by_number(ROOT / "data/demo/videos" / f"{video}.mp4", numbers, SENSOR, params["frames"]["crop"])
        sensor += [got[n] for n in numbers]
    seconds = params["crossval"]["group_seconds"]
    return Dataset(frames=np.asarray(frames.images), sensor=np.stack(sensor),
                   labels=np.array([CLASSES.index(truth[i]) for i in frames.ids]),
                   groups=[f"{v}/{int((t or 0) // seconds)}" for v, t in zip(frames.videos, frames.times)],
                   backbone=models.load_weights(ROOT / "models/backbone.safetensors"))


def split(data: Dataset, repeat: int) -> tuple[list[int], list[int]]:
    """(pool, test): a third of the time groups to test on, every class in both."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=100 + repeat)
    pool, test = next(folds.split(np.zeros(len(data.labels)), data.labels, data.groups))
    return [int(i) for i in pool], [int(i) for i in test]


def fit(data, model_cfg: dict, cfg: dict, train: list[int], seed: int):
    """The recipe (cfg) on the `train` frames, from the data's backbone."""
    from maskinspect.model import models
    from maskinspect.model.finetune import finetune
    from maskinspect.model.training import seed_everything

    seed_everything(seed)
    model = models.build_classifier(model_cfg)
    models.load_into(model.features, data.backbone, "backbone")
    camera = data.sensor[train] if cfg["augment"]["camera"] > 0 else None
    finetune(model, data.frames[train], data.labels[train], {**cfg, "seed": seed}, model_cfg["input_size"],
             camera=camera)
    return model


def score(model, data, judged: list[int], size: int) -> dict:
    """Balanced accuracy and `bad` recall on the judged frames, through the camera path and stored."""
    from maskinspect.device.camera import camera_pixels
    from maskinspect.model.evaluation import labels_of, report
    from maskinspect.model.training import batched_forward

    truth = [CLASSES[i] for i in data.labels[judged]]
    camera = report(truth, labels_of(batched_forward(model, camera_pixels(data.sensor[judged], size), size, 256)))
    stored = report(truth, labels_of(batched_forward(model, data.frames[judged], size, 256)))
    return {"camera": camera["balanced_accuracy"], "camera_bad": camera["recall"]["bad"],
            "stored": stored["balanced_accuracy"], "stored_bad": stored["recall"]["bad"]}


def train_and_score(data: Dataset, chosen: list[int], test: list[int], cfg: dict, model_cfg: dict, seed: int):
    """The recipe on the chosen frames; (figures, logits and penultimate features for every frame)."""
    import torch

    from maskinspect.model.training import batched_forward

    size = model_cfg["input_size"]
    model = fit(data, model_cfg, cfg, chosen, seed)
    figures = score(model, data, test, size)
    logits = batched_forward(model, data.frames, size, 256)
    with torch.no_grad():
        features = batched_forward(model.features, data.frames, size, 256)
    return figures, logits, features


def curve(data: Dataset, embeddings: np.ndarray, strategy: str, repeat: int, budgets: list[int], cfg: dict,
          model_cfg: dict) -> list[dict]:
    """One learning curve: the strategy adds frames budget by budget; a model at each."""
    pool, test = split(data, repeat)
    chosen: list[int] = []
    logits = features = None
    out = []
    for budget in budgets:
        use = strategy if (strategy not in MODEL_DRIVEN or logits is not None) else "random"  # rounds need a model
        chosen += pick(use, budget - len(chosen), pool, chosen, embeddings, seed=1000 * repeat + budget,
                       logits=logits, features=features)
        if len(set(data.labels[chosen])) < len(CLASSES):  # a class never drawn: the recipe cannot train on it
            out.append({"budget": budget, "classes_missing": True})
            continue
        figures, logits, features = train_and_score(data, chosen, test, cfg, model_cfg, seed=repeat)
        out.append({"budget": budget, **figures})
    return out


def table(results: dict, budgets: list[int]) -> str:
    head = "| strategy | " + " | ".join(f"{b} labels" for b in budgets) + " |"
    lines = [head, "|---|" + "---:|" * len(budgets)]
    for strategy, runs in results.items():
        cells = []
        for k, _budget in enumerate(budgets):
            got = [run[k] for run in runs if "camera" in run[k]]
            if not got:
                cells.append("—")
                continue
            cam = np.array([g["camera"] for g in got])
            bad = np.array([g["camera_bad"] for g in got])
            cells.append(f"{cam.mean():.3f} ± {cam.std():.3f} (bad {bad.mean():.2f})"
                         + (f" [{len(got)}/{len(runs)}]" if len(got) < len(runs) else ""))
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(results: dict, budgets: list[int]) -> str:
    """Each strategy against random on the same splits (a repeat is one split for all of them):
    the mean difference ± its spread, and the fewest labels that reach random's best budget."""
    if "random" not in results:
        return ""
    base = results["random"]
    top = len(budgets) - 1
    target = np.mean([run[top]["camera"] for run in base if "camera" in run[top]])
    lines = [f"| strategy − random (same splits) | " + " | ".join(f"{b}" for b in budgets)
             + f" | fewest labels reaching random at {budgets[top]} ({target:.3f}) |",
             "|---|" + "---:|" * (len(budgets) + 1)]
    for strategy, runs in results.items():
        cells = []
        for k in range(len(budgets)):
            d = [a[k]["camera"] - b[k]["camera"] for a, b in zip(runs, base) if "camera" in a[k] and "camera" in b[k]]
            cells.append(f"{np.mean(d):+.3f} ± {np.std(d):.3f}" if d else "—")
        means = [np.mean([run[k]["camera"] for run in runs if "camera" in run[k]] or [np.nan]) for k in range(len(budgets))]
        reach = next((budgets[k] for k in range(len(budgets)) if means[k] >= target), None)
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {reach if reach else 'not reached'} |")
    return "\n".join(lines)


def plot(results: dict, budgets: list[int], path: Path, title: str) -> None:
    from maskinspect.report.plots import _figure, _save

    plt, fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for strategy, runs in results.items():
        xs, means, stds = [], [], []
        for k, budget in enumerate(budgets):
            got = [run[k]["camera"] for run in runs if "camera" in run[k]]
            if got:
                xs.append(budget)
                means.append(np.mean(got))
                stds.append(np.std(got))
        ax.errorbar(xs, means, yerr=stds, label=strategy, marker="o", capsize=3, linewidth=1.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("labelled frames")
    ax.set_ylabel("balanced accuracy, camera path")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("real", "demo"), default="real")
    p.add_argument("--recipe", choices=("full", "linear"), default="full")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    p.add_argument("--out", type=Path, help="every figure, JSON")
    p.add_argument("--plot", type=Path, help="the curves, PNG")
    p.add_argument("--resume", action="store_true", help="keep the curves --out holds already (same data and recipe)")
    args = p.parse_args()

    import torch

    from maskinspect.workflow import params as params_mod

    torch.set_num_threads(2)
    raw = params_mod.load_raw(ROOT / "params.yaml")
    params = params_mod.effective({**raw, "data": {**raw["data"], "source": "demo" if args.data == "demo" else "images"}})
    cfg = params["finetune"] if args.recipe == "full" else params_mod.merge(
        raw["finetune"], raw["demo_recipe"]["finetune"])
    data = real_data(params) if args.data == "real" else demo_data(params)
    from maskinspect.model import models
    from maskinspect.model.training import batched_forward

    backbone = models.build_backbone(params["model"])
    models.load_into(backbone, data.backbone, "backbone")
    embeddings = batched_forward(backbone, data.frames, params["model"]["input_size"], 256)
    pool_size = len(split(data, 0)[0])
    budgets = [b for b in args.budgets if b <= pool_size]
    print(f"label_efficiency: {args.data} data, {len(data.labels)} frames (pool about {pool_size}), recipe "
          f"{args.recipe}, {args.repeats} repeats, budgets {budgets}", file=sys.stderr, flush=True)
    results: dict[str, list] = {}
    if args.resume and args.out and args.out.is_file():  # what an interrupted run finished is kept
        done = json.loads(args.out.read_text())
        if (done["args"]["data"], done["args"]["recipe"], done["budgets"]) != (args.data, args.recipe, budgets):
            sys.exit(f"label_efficiency: {args.out} holds other data, recipe or budgets: no resume")
        results = done["results"]
    for strategy in args.strategies:
        results.setdefault(strategy, [])
        for repeat in range(len(results[strategy]), args.repeats):
            t0 = time.perf_counter()
            results[strategy].append(curve(data, embeddings, strategy, repeat, budgets, cfg, params["model"]))
            print(f"label_efficiency: {strategy} repeat {repeat + 1}: "
                  f"{[round(r.get('camera', float('nan')), 3) for r in results[strategy][-1]]} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            if args.out:
                args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out), "plot": str(args.plot)},
                                                "budgets": budgets, "results": results}, indent=1))
    print(table(results, budgets))
    print()
    print(paired(results, budgets))
    if args.plot:
        plot(results, budgets, args.plot, f"{args.data} frames, {args.recipe} recipe, {args.repeats} repeats")
    return 0


if __name__ == "__main__":
    sys.exit(main())

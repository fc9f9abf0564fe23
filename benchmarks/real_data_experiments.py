"""The real-data recipe search, reproduced: every run of the README's "What was tried" table
as a DVC experiment in a clean clone of HEAD switched to the published project's frames.

    scripts/venv.sh python benchmarks/real_data_experiments.py [--only NAME ...] [--keep DIR]

Needs the published frames and checkpoint (pins/published-*.yaml: from the network, or from a
mirror named by MASKINSPECT_MIRROR such as ../shared). Each run is
`dvc exp run -n NAME -S ...` on the three data keys (15 to 30 minutes each on 2 cores, most
of it the cross-validation: 5 folds x 3 splits); `dvc exp show` in the kept clone lists them
all. Prints the table (markdown): the cross-validation on train/ (the figure the recipe is
chosen by), then the int8 model on dev/ through the camera's preprocessing (the confirmation).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> `dvc exp run -S` overrides, relative to the real-data recipe of params.yaml.
# The recipe itself is "recipe" (no override). Every run but the bad-weight ones was made before
# `bad` weighed more in the loss, and keeps finetune.bad_weight 1.0; those below no-camera-augment also before the
# recipe trained through the camera's path (finetune.augment.camera 0), most of them also when
# it fine-tuned for 100 epochs; each keeps its settings, so that it reproduces its README row.
_BW1 = "finetune.bad_weight=1.0"
_NO_CAMERA = "finetune.augment.camera=0.0"
_E100 = "finetune.epochs=100"
_PUBLISHED_AUGMENT = ["finetune.augment.color_jitter=0.25", "finetune.augment.min_scale=0.9",
                      "finetune.augment.rotation=0", "finetune.augment.hue=null"]
_STRIDE2 = ["frames.size=128", "model.input_size=128", "model.stem_stride=2"]
EXPERIMENTS: dict[str, list[str]] = {
    "recipe": [],
    # the recipe before `bad` weighed twice (1201aa9); its 15 folds were run in two parts,
    # camera-augment-1.0-r1 and -splits23 below
    "bad-weight-1": [_BW1],
    "no-camera-augment": [_BW1, _NO_CAMERA],
    "epochs-100": [_BW1, _NO_CAMERA, _E100],
    "published-recipe": [_BW1, _NO_CAMERA, _E100, "finetune.mode=frozen", "finetune.batch_size=200",
                         "finetune.schedule=constant", *_PUBLISHED_AUGMENT],
    "full-64": [_BW1, _NO_CAMERA, _E100, *_PUBLISHED_AUGMENT],
    "full-128-stride2": [_BW1, _NO_CAMERA, _E100, *_PUBLISHED_AUGMENT, *_STRIDE2],
    "recipe-128-stride2": [_BW1, _NO_CAMERA, _E100, *_STRIDE2],
    "no-rotation-hue": [_BW1, _NO_CAMERA, _E100, "finetune.augment.rotation=0", "finetune.augment.hue=null"],
    "ssl-continued": [_BW1, _NO_CAMERA, _E100, "pretrain.epochs=60"],
    "no-class-weight": [_BW1, _NO_CAMERA, _E100, "finetune.class_weighted=false"],
    "calibration-20": [_BW1, _NO_CAMERA, _E100, "quantize.calibration_frames=20"],
    # cheaper inference (issue: at most 30 M instructions on the camera; benchmarks/inference_cost.py)
    "recipe-80-stride2": [_BW1, _NO_CAMERA, "frames.size=80", "model.input_size=80", "model.stem_stride=2"],
    "recipe-64-stride2": [_BW1, _NO_CAMERA, "model.stem_stride=2"],
    # the same two networks with today's recipe (trained through the camera's input path)
    "camera-80-stride2": [_BW1, "frames.size=80", "model.input_size=80", "model.stem_stride=2"],
    "camera-64-stride2": [_BW1, "model.stem_stride=2"],
    # a 48 px input at stride 1 (30.83 M instructions: benchmarks/inference_cost.py), with the
    # recipe of fee9278, on split 1 (against the same 5 folds of bad-weight-2.5-split1; at 298e75d the
    # run stopped at compare_published, which then would not feed 48 px frames to the 64 px
    # published model: it now compares the two through the camera path)
    "recipe-48-split1": ["frames.size=48", "model.input_size=48", "crossval.repeats=1"],
    # the first downsampling in block 1 instead of block 2 (42.58 M instructions trained against
    # 56.58 M: the stem and blocks 2-4 keep their pretrained scales), today's recipe, split 1; at
    # c8915a4 it lost: camera path 0.934 ± 0.040 against 0.967 ± 0.022 (README, "Cheaper inference")
    "block1-stride2-split1": ["model.block1_stride=2", "crossval.repeats=1"],
    # the 80 px stride-2 network (26.2 M instructions trained) from a backbone distilled from the
    # published one at its own scale, without labels: make it first with
    # `benchmarks/distill_backbone.py --out ../distilled-80.safetensors` (about 10 minutes); split 1;
    # at 43642fc it lost: camera path 0.833 ± 0.053 against 0.967 ± 0.022
    "distill-80-stride2-split1": ["frames.size=80", "model.input_size=80", "model.stem_stride=2",
                                  "crossval.repeats=1", f"pretrain.init={ROOT.parent / 'distilled-80.safetensors'}"],
    # training through the camera's input path (the share of the samples resized as the firmware
    # does): 1.0 is now the recipe; it was chosen in two runs, one split of the CV and then the
    # other two (seeds 6 and 7), joined by benchmarks/combine_crossval.py
    "camera-augment-0.5": [_BW1, "finetune.augment.camera=0.5"],
    "camera-augment-0.5-split2": [_BW1, "finetune.augment.camera=0.5", "crossval.repeats=1", "crossval.seed=6"],
    "camera-augment-1.0-r1": [_BW1, "finetune.augment.camera=1.0", "crossval.repeats=1"],
    "camera-augment-1.0-splits23": [_BW1, "finetune.augment.camera=1.0", "crossval.repeats=2", "crossval.seed=6"],
    # sensor noise on the camera-path samples (standard deviation in 8-bit levels, at the sensor)
    "camera-noise-4": [_BW1, "finetune.augment.noise=4"],
    # `bad` weighing twice the balance in the loss (the recipe from 1201aa9 until 2.5), in two runs: splits 2 and 3
    # first (where 6 of the 7 camera-path `bad` misses of bad-weight-1 were), then split 1
    "bad-weight-2-splits23": ["finetune.bad_weight=2.0", "crossval.repeats=2", "crossval.seed=6"],
    "bad-weight-2-split1": ["finetune.bad_weight=2.0", "crossval.repeats=1"],
    # `bad` weighing three times (the recipe from 0880431 to b58b143: README), the same two runs
    # (4 of bad-weight-2's 6 camera-path `bad` misses were in splits 2 and 3)
    "bad-weight-3-splits23": ["finetune.bad_weight=3.0", "crossval.repeats=2", "crossval.seed=6"],
    "bad-weight-3-split1": ["finetune.bad_weight=3.0", "crossval.repeats=1"],
    # half-way between the two (two and three times each held one of issue 14's two checks): the
    # recipe since it won the 15 folds (README, "What was tried")
    "bad-weight-2.5-splits23": ["finetune.bad_weight=2.5", "crossval.repeats=2", "crossval.seed=6"],
    "bad-weight-2.5-split1": ["finetune.bad_weight=2.5", "crossval.repeats=1"],
}


def run(cmd: list[str], cwd: Path, log: Path | None = None) -> None:
    # the clone's own package, not the checkout's that .venv has installed (editable)
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    if log:
        with open(log, "w") as out:
            result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    else:
        result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if result.returncode != 0:
        tail = log.read_text()[-3000:] if log else result.stdout[-3000:]
        sys.exit(f"real_data_experiments: {' '.join(cmd)} failed in {cwd}:\n{tail}")


def switch_to_images(clone: Path) -> None:
    """Set the three data keys (in place, keeping the file's comments) to the published frames,
    pinned outside inputs, regenerate dvc.yaml, commit."""
    path = clone / "params.yaml"
    text = path.read_text()
    for key, value in (("source", "images"), ("images_dir", "pinned:published-frames-train"),
                       ("test_dir", "pinned:published-frames-dev")):
        text, n = re.subn(rf"^(  {key}:) *\S+", rf"\1 {value}", text, count=1, flags=re.M)
        if n != 1:
            sys.exit(f"real_data_experiments: {path}: no data.{key} line to set")
    path.write_text(text)
    run([sys.executable, "scripts/sync_dvc.py"], clone)
    run(["git", "commit", "-qam", "real camera data (the three data keys)"], clone)


def row(clone: Path, name: str, seconds: float) -> dict:
    metrics = clone / "metrics"
    cv = json.loads((metrics / "crossval.json").read_text())
    ours = json.loads((metrics / "published_comparison.json").read_text())["models"]["ours"]
    drop = json.loads((metrics / "quantize.json").read_text())["drop"]["balanced_accuracy"]
    return {"run": name, "overrides": EXPERIMENTS[name],
            "cv": f"{cv['balanced_accuracy_mean']:.3f} ± {cv['balanced_accuracy_std']:.3f}",
            "cv_bad": cv["pooled"]["recall"]["bad"],
            "cv_camera": f"{cv['camera_balanced_accuracy_mean']:.3f} ± {cv['camera_balanced_accuracy_std']:.3f}",
            "cv_camera_bad": cv["camera_pooled"]["recall"]["bad"],
            "dev": ours["balanced_accuracy"], "dev_bad": ours["recall"]["bad"],
            "dev_camera": ours["camera"]["balanced_accuracy"], "dev_camera_bad": ours["camera"]["recall"]["bad"],
            "drop": drop, "seconds": round(seconds)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(EXPERIMENTS), help="these runs only")
    p.add_argument("--keep", type=Path, help="clone into this folder and keep it (dvc exp show there)")
    args = p.parse_args()
    from maskinspect.workflow import pinned

    for name in ("published-frames-train", "published-frames-dev", "published-checkpoint"):
        if pinned.available(name, ROOT) is None:
            sys.exit(f"real_data_experiments: outside input {name} cannot be fetched (no network; set "
                     f"{pinned.MIRROR_ENV} to a mirror such as ../shared)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="maskinspect-exps-"))
    work.mkdir(parents=True, exist_ok=True)
    clone = work / "repo"
    shutil.rmtree(clone, ignore_errors=True)
    run(["git", "clone", "-q", str(ROOT), str(clone)], work)
    switch_to_images(clone)
    # the DVC cache (and its run cache) beside the clone: a rerun in a kept folder skips the
    # stages whose code, data and params it has already run
    run(["dvc", "cache", "dir", "--local", str((work / "dvc-cache").resolve())], clone)
    (work / "logs").mkdir(exist_ok=True)
    print("| run | overrides (`dvc exp run -S`) | CV balanced acc. | CV `bad` recall (pooled) "
          "| CV camera path | CV camera `bad` recall | dev int8 | dev `bad` (int8) | dev camera path "
          "| dev camera `bad` | int8 drop (dev) | seconds |\n"
          "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in args.only or EXPERIMENTS:
        cmd = ["dvc", "exp", "run", "-n", name] + [a for o in EXPERIMENTS[name] for a in ("-S", o)]
        print(f"real_data_experiments: {' '.join(cmd)}", file=sys.stderr, flush=True)
        # dvc exp run starts from the workspace, which holds the last run's params: back to HEAD
        run(["git", "reset", "-q", "--hard", "HEAD"], clone)
        t0 = time.perf_counter()
        run(cmd, clone, work / "logs" / f"{name}.log")
        r = row(clone, name, time.perf_counter() - t0)
        overrides = " ".join(f"`{o}`" for o in r["overrides"]) or "—"
        print(f"| {r['run']} | {overrides} | {r['cv']} | {r['cv_bad']:.3f} | {r['cv_camera']} "
              f"| {r['cv_camera_bad']:.3f} | {r['dev']:.3f} | {r['dev_bad']:.3f} | {r['dev_camera']:.3f} "
              f"| {r['dev_camera_bad']:.3f} | {r['drop']:.3f} | {r['seconds']} |", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

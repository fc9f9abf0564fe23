"""The GPU check, sized to a lent GPU machine (at most 5 minutes, PyTorch preinstalled, no network):
pretraining throughput, determinism, and the batched views' statistics on the GPU against the CPU.

    bash benchmarks/gpu_check.sh                                       # there: installs .whl, runs this
    scripts/venv.sh python benchmarks/gpu_check.py --device cpu --quick   # here: the same, on the CPU

Prints one markdown table per part and writes gpu_check.json (--out folder):
1. throughput: pairs of views a second through the whole SimCLR step (views, forward, NT-Xent,
   backward, step) and for the views alone, PIL against batched, at batch 128 and 1,024;
2. determinism: two short pretrainings (batched views, on the device) give the same backbone bytes;
3. the views on the device against the CPU: their mean, spread and share of flipped, grey and
   jittered samples (the generators differ, so the figures agree in distribution, not in bytes);
4. fine-tuning's camera-path augmentation (finetune.augmenter): samples a second, PIL on one CPU
   core against batched on the device, and the batched samples' statistics there against the CPU.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import maskinspect  # noqa: E402,F401 - pins the numerical environment first


def determinism(images, dev, epochs: int) -> dict:
    """Two pretrainings with the batched views: the sha256 of each backbone."""
    import io

    import torch

    from maskinspect.model import models
    from maskinspect.model.pretrain import pretrain
    from maskinspect.model.training import seed_everything
    from maskinspect.workflow import params as params_mod

    params = params_mod.load(ROOT / "params.yaml")
    cfg = {**params["pretrain"], "augment": "batched", "epochs": epochs, "batch_size": 256}
    shas = []
    for _ in range(2):
        seed_everything(cfg["seed"])  # the initial weights come from torch's RNG, as the stage does it
        backbone = models.build_backbone(params["model"])
        start = time.perf_counter()
        pretrain(backbone, images, cfg, params["model"], dev=dev)
        buf = io.BytesIO()
        torch.save({k: v.contiguous() for k, v in backbone.state_dict().items()}, buf)
        shas.append(hashlib.sha256(buf.getvalue()).hexdigest())
        seconds = time.perf_counter() - start
    return {"epochs": epochs, "frames": len(images), "sha256": shas, "identical": shas[0] == shas[1],
            "seconds_a_run": round(seconds, 1)}


def view_statistics(images, dev) -> dict:
    """What the batched views look like, by figures a distribution can be compared on."""
    import torch

    from maskinspect.model.augment import BatchedViews
    from maskinspect.workflow import params as params_mod

    params = params_mod.load(ROOT / "params.yaml")
    views = BatchedViews(params["pretrain"]["transform"], params["model"]["input_size"], 0, dev)
    x = torch.from_numpy(images[:1024]).to(dev)
    out = torch.cat([views.view(x) for _ in range(4)]).float().cpu()
    grey = (out[:, 0] - out[:, 1]).abs().amax((1, 2)) < 1e-6
    return {"mean": round(float(out.mean()), 4), "std": round(float(out.std()), 4),
            "channel_means": [round(float(c), 4) for c in out.mean((0, 2, 3))],
            "grey_share": round(float(grey.float().mean()), 4), "samples": len(out)}


def sensor_frames(images, n: int = 256):
    """Sensor-size (240 x 240) frames made from the demo's: what fine-tuning's camera path takes."""
    import numpy as np
    import torch

    from maskinspect.device.camera import SENSOR

    x = torch.from_numpy(np.ascontiguousarray(images[:n])).permute(0, 3, 1, 2).float()
    big = torch.nn.functional.interpolate(x, size=(SENSOR, SENSOR), mode="bilinear", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def camera_augmentation(images, dev, seconds: float) -> dict:
    """Fine-tuning's camera path (params.yaml's finetune.augment), samples a second: the PIL path
    one sample at a time, the batched path at batch 32 and 256; and the batched samples' mean and
    spread on the device and on the CPU."""
    import numpy as np
    import torch
    from PIL import Image

    from maskinspect.model.camera_augment import BatchedAugment
    from maskinspect.model.finetune import CameraPath
    from maskinspect.workflow import params as params_mod

    params = params_mod.load(ROOT / "params.yaml")
    aug, size = params["finetune"]["augment"], params["model"]["input_size"]
    sensor = sensor_frames(images)
    rates = {}
    path, done, start = CameraPath(aug, size), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        path(Image.fromarray(sensor[done % len(sensor)]))
        done += 1
    rates["pil, one CPU core"] = done / (time.perf_counter() - start)
    for batch in (32, 256):
        batched = BatchedAugment(aug, size, 0, dev)
        x = torch.from_numpy(np.resize(sensor, (batch, *sensor.shape[1:]))).to(dev)
        batched.camera(x)  # warm-up: kernels, allocations
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            out = batched.camera(x)
            done += batch
        float(out.sum())  # waits for the device
        rates[f"batched {batch}, {dev.type}"] = done / (time.perf_counter() - start)

    def statistics(where):
        out = BatchedAugment(aug, size, 0, where).camera(torch.from_numpy(sensor).to(where)).float().cpu()
        return {"mean": round(float(out.mean()), 4), "std": round(float(out.std()), 4),
                "between": round(float(out.mean((1, 2, 3)).std()), 4)}

    return {"samples_per_s": {k: round(v) for k, v in rates.items()},
            "statistics": {"device": statistics(dev), "cpu": statistics(torch.device("cpu"))}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="a smoke run: seconds, not minutes")
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args()

    import torch

    from pretrain_throughput import frames, measure

    dev = torch.device(args.device)
    images = frames()
    seconds = 2 if args.quick else 15
    result = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
              "torch": torch.__version__, "throughput": []}
    for batch in ((128,) if args.quick else (128, 1024)):
        for augment in ("pil", "batched"):
            for views_only in (False, True):
                rate = measure(images, augment, batch, dev, seconds, views_only)
                result["throughput"].append({"batch": batch, "views": augment,
                                             "what": "views only" if views_only else "whole step",
                                             "pairs_per_s": round(rate)})
    result["determinism"] = determinism(images if not args.quick else images[:256], dev, 1 if args.quick else 3)
    result["views"] = {"device": view_statistics(images, dev), "cpu": view_statistics(images, torch.device("cpu"))}
    result["camera_augmentation"] = camera_augmentation(images, dev, 1 if args.quick else 5)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    print(f"## GPU check on {result['device']} (torch {result['torch']})\n")
    print("| batch | views | what | pairs a second |\n|---:|---|---|---:|")
    for r in result["throughput"]:
        print(f"| {r['batch']} | {r['views']} | {r['what']} | {r['pairs_per_s']:,} |")
    d = result["determinism"]
    print(f"\ndeterminism: {d['epochs']} epoch(s) on {d['frames']} frames twice: "
          f"{'identical bytes' if d['identical'] else 'DIFFERENT bytes'} ({d['seconds_a_run']} s a run)")
    v = result["views"]
    print("\n| views on | mean | std | grey share |\n|---|---:|---:|---:|")
    for where in ("device", "cpu"):
        print(f"| {where} | {v[where]['mean']} | {v[where]['std']} | {v[where]['grey_share']} |")
    c = result["camera_augmentation"]
    print("\n| fine-tuning's camera path | samples a second |\n|---|---:|")
    for what, rate in c["samples_per_s"].items():
        print(f"| {what} | {rate:,} |")
    print("\n| camera samples on | mean | std | spread of sample means |\n|---|---:|---:|---:|")
    for where in ("device", "cpu"):
        st = c["statistics"][where]
        print(f"| {where} | {st['mean']} | {st['std']} | {st['between']} |")
    return 0 if d["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())

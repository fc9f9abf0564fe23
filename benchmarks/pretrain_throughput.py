"""SimCLR pretraining throughput, pairs of views a second: Lightly's PIL transform one image at a time
(pretrain.augment: pil) against the batched views on the model's device (batched); the whole loop
(views, forward, NT-Xent, backward, step), and the views alone.

    scripts/venv.sh python benchmarks/pretrain_throughput.py [--device cuda] [--batch 128 512] [--seconds 20]

On the demo's frames (data/frames/demo-*.npy of a demo build) or, without them, on random frames
of the same shape. Prints a markdown table; --json writes it too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import maskinspect  # noqa: E402,F401 - pins the numerical environment first


def frames() -> np.ndarray:
    shards = sorted((ROOT / "data/frames").glob("demo-*.npy"))
    if shards:
        return np.concatenate([np.load(s) for s in shards])
    return np.random.default_rng(0).integers(0, 256, (1200, 64, 64, 3), dtype=np.uint8)


def measure(images: np.ndarray, augment: str, batch: int, dev, seconds: float, views_only: bool) -> float:
    import torch
    from lightly.loss import NTXentLoss

    from maskinspect.model import models
    from maskinspect.model.pretrain import SimCLR, device_batches, pil_batches
    from maskinspect.workflow import params as params_mod

    cfg = {**params_mod.load(ROOT / "params.yaml")["pretrain"], "augment": augment, "batch_size": batch}
    model_cfg = params_mod.load(ROOT / "params.yaml")["model"]
    gen = torch.Generator().manual_seed(0)
    make = device_batches if augment == "batched" else pil_batches
    epoch, _steps = make(images, cfg, model_cfg["input_size"], batch, gen, dev)
    model = SimCLR(models.build_backbone(model_cfg), model_cfg["features"], 64, 32).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = NTXentLoss(temperature=0.5)
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for v0, v1 in epoch():
            if not views_only:
                loss = loss_fn(model(v0), model(v1))
                opt.zero_grad()
                loss.backward()
                opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            pairs += len(v0)
            if time.perf_counter() - start >= seconds:
                break
    return pairs / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", nargs="+", type=int, default=[128])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    dev = torch.device(args.device)
    images = frames()
    rows = []
    for batch in args.batch:
        for augment in ("pil", "batched"):
            for views_only in (False, True):
                rate = measure(images, augment, batch, dev, args.seconds, views_only)
                rows.append({"device": args.device, "batch": batch, "augment": augment,
                             "what": "views only" if views_only else "whole loop", "pairs_per_s": round(rate)})
                print(f"pretrain_throughput: {rows[-1]}", file=sys.stderr, flush=True)
    print("| device | batch | views | what | pairs a second |\n|---|---:|---|---|---:|")
    for r in rows:
        print(f"| {r['device']} | {r['batch']} | {r['augment']} | {r['what']} | {r['pairs_per_s']:,} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

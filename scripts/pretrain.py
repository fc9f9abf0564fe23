"""Stage pretrain: SimCLR self-supervised pretraining of the ResNet-9 backbone on the frames.

In:  --frames shards; --init starting weights (params pretrain.init: a .safetensors of ours, a
     Lightly .ckpt such as the published pretrained.ckpt, or a state_dict .pt);
     params.yaml (model.*, pretrain.*, runtime.threads)
Out: --backbone weights (.safetensors), --loss per-epoch loss CSV (a DVC plot)
pretrain.epochs: 0 uses the starting weights as they are.
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.atomic import write_csv
from maskinspect.errors import PipelineError
from maskinspect.data.frames import load_shards
from maskinspect.model.training import seed_everything
from maskinspect.workflow import pinned


@cli.stage("pretrain")
def main(args, params):
    cfg, model_cfg = params["pretrain"], params["model"]
    seed_everything(cfg["seed"])  # the initial weights come from torch's RNG too
    backbone = models.build_backbone(model_cfg)
    if args.init:
        init = pinned.local(args.init)  # an outside input's pin: fetched, checked against its sha256
        models.load_into(backbone, models.read_any_weights(init), str(args.init))
        print(f"pretrain: starting from {cfg['init']}", file=sys.stderr)
    elif cfg["epochs"] == 0:
        raise PipelineError("params.yaml: pretrain.epochs is 0 but pretrain.init names no weights to use")

    losses: list[float] = []
    if cfg["epochs"] > 0:
        from maskinspect.model.pretrain import pretrain

        frames = load_shards(args.frames)
        if len(frames) < 2:
            raise PipelineError(f"pretraining needs at least 2 frames, the shards hold {len(frames)}")
        result = pretrain(backbone, frames, cfg, model_cfg)  # pil: a frame at a time from the files
        losses = result.losses
        print(f"pretrain: {len(frames)} frames, {cfg['epochs']} epochs on {result.device}, "
              f"loss {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)
    models.save_weights(args.backbone, backbone, {"stage": "pretrain", "init": cfg["init"] or ""})
    write_csv(args.loss, ("epoch", "loss"), [(i + 1, f"{v:.6f}") for i, v in enumerate(losses)])


if __name__ == "__main__":
    sys.exit(main())

"""Stage embed: a 16-number embedding of every frame from the pretrained backbone.

In:  --frames shards, --backbone weights, params.yaml (model.*, embed.*, runtime.threads)
Out: --embeddings (.npy, float32, one row per frame), --ids: frame ids in the same order (.csv)
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.model import models
from maskinspect.atomic import save_npy, write_csv
from maskinspect.data.frames import load_shards
from maskinspect.model.training import batched_forward


@cli.stage("embed")
def main(args, params):
    backbone = models.build_backbone(params["model"])
    models.load_into(backbone, models.load_weights(args.backbone), str(args.backbone))
    frames = load_shards(args.frames)
    emb = batched_forward(backbone, frames.images, params["model"]["input_size"], params["embed"]["batch_size"])
    save_npy(args.embeddings, emb.astype("float32"))
    write_csv(args.ids, ("frame_id",), [(i,) for i in frames.ids])
    print(f"embed: {emb.shape[0]} frames -> {emb.shape[1]} features", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

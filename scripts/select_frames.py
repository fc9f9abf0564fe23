"""Stage select_frames: which frames a person labels (coreset) and which ones test the model.

In:  --embeddings and --ids (embed), --index frame indexes (for video and time), params.yaml (select.*)
Out: --selected CSV (frame_id, rank: coreset order), --test-sample CSV (frame_id),
     --map PNG: the embeddings on their two principal axes, selected and test frames marked
"""
from __future__ import annotations

import sys

from maskinspect import cli
from maskinspect.atomic import write_csv
from maskinspect.errors import PipelineError
from maskinspect.frames import read_index
from maskinspect.labels import read_labelled
from maskinspect.plots import embedding_map
from maskinspect.selection import pca_2d, split, time_blocks


@cli.stage("select_frames")
def main(args, params):
    import numpy as np

    cfg = params["select"]
    emb = np.load(args.embeddings, allow_pickle=False)
    ids = read_labelled(args.ids)[0]
    rows = {r["frame_id"]: r for path in args.index for r in read_index(path)}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise PipelineError(f"{args.ids}: frame {missing[0]} is in no frame index ({len(missing)} missing)")
    videos = [rows[i]["video"] for i in ids]
    times = [float(rows[i]["time"]) if rows[i]["time"] else None for i in ids]
    numbers = [int(rows[i]["frame"]) for i in ids]
    blocks = time_blocks(videos, times, numbers, cfg["block_seconds"])
    result = split(emb, blocks, cfg["n"], cfg["test_n"], cfg["test_fraction"], cfg["seed"], cfg["normalize"])

    write_csv(args.selected, ("frame_id", "rank"), [(ids[i], r) for r, i in enumerate(result.selected)])
    write_csv(args.test_sample, ("frame_id",), [(ids[i],) for i in result.test])
    embedding_map(args.map, pca_2d(emb), result.selected, result.test,
                  f"{len(ids)} frames: coreset of {len(result.selected)}, test sample of {len(result.test)}")
    print(f"select_frames: {len(result.selected)} frames to label (coreset), {len(result.test)} test frames "
          f"from {result.test_blocks} of {result.blocks} time blocks", file=sys.stderr)
    if len(result.selected) < cfg["n"] or len(result.test) < cfg["test_n"]:
        print(f"select_frames: note: fewer frames than asked (select.n {cfg['n']}, select.test_n {cfg['test_n']})",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

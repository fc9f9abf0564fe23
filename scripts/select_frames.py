"""Stage select_frames: which frames a person labels (coreset) and which ones test the model.

In:  --embeddings and --ids (embed), --index frame indexes (for video and time), --rounds (the rounds
     of active learning, `maskinspect propose`: their frames join the selection after the coreset's,
     in their order), params.yaml (select.*)
Out: --selected CSV (frame_id, rank: coreset order, then the rounds'), --test-sample CSV (frame_id),
     --map PNG: the embeddings on their two principal axes, selected and test frames marked
"""
from __future__ import annotations

import sys

from maskinspect.workflow import runner as cli
from maskinspect.atomic import write_csv
from maskinspect.data.frames import read_index
from maskinspect.data.labels import read_labelled
from maskinspect.report.plots import embedding_map
from maskinspect.data.selection import pca_2d, round_frames, selection


@cli.stage("select_frames")
def main(args, params):
    import numpy as np

    cfg = params["select"]
    emb = np.load(args.embeddings, allow_pickle=False)
    ids = read_labelled(args.ids)[0]
    rows = {r["frame_id"]: r for path in args.index for r in read_index(path)}
    result, n, test_n = selection(emb, ids, rows, cfg, str(args.ids))
    chosen = [ids[i] for i in result.selected] + round_frames(args.rounds or [], ids, result)
    write_csv(args.selected, ("frame_id", "rank"), [(fid, r) for r, fid in enumerate(chosen)])
    write_csv(args.test_sample, ("frame_id",), [(ids[i],) for i in result.test])
    embedding_map(args.map, pca_2d(emb), result.selected, result.test,
                  f"{len(ids)} frames: coreset of {len(result.selected)}, test sample of {len(result.test)}")
    rounds = f", {len(chosen) - len(result.selected)} more from {len(args.rounds)} round(s)" if args.rounds else ""
    print(f"select_frames: {len(result.selected)} frames to label (coreset){rounds}, {len(result.test)} test frames "
          f"from {result.test_blocks} of {result.blocks} time blocks", file=sys.stderr)
    if len(result.selected) < n or len(result.test) < test_n:
        print(f"select_frames: note: fewer frames than asked (select.n {cfg['n']}, select.test_n {cfg['test_n']})",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

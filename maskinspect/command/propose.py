"""`maskinspect propose`: a round of active learning. Once a model exists, the next frames to label,
chosen from the training frames not yet selected by a strategy (maskinspect/data/strategies.py:
the model-driven ones from the classifier the last build made), written as the next
`data/selection/rounds/round-NN.csv`.

A round is a small file kept in git, an input of the selection stage like the labels file: the
next build adds its frames to the selection (after the coreset's), hands them off to a person in
the round's order, and rebuilds what the new labels change. The test sample never moves: a round
chooses from outside the test blocks.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from maskinspect import CLASSES
from maskinspect.atomic import write_csv
from maskinspect.errors import PipelineError
from maskinspect.workflow.layout import EMBEDDINGS, ROUNDS, SELECTED

CLASSIFIER = "models/classifier.safetensors"


def _need(root: Path, rel: str, what: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise PipelineError(f"{rel}: no {what} yet: run the build first (a round chooses with what it made)")
    return path


def model_outputs(root: Path, params: dict, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's logits and penultimate features for the frames (stored frames, eval mode)."""
    from maskinspect.model import models
    from maskinspect.model.training import batched_forward

    model = models.build_classifier(params["model"])
    weights = _need(root, CLASSIFIER, "classifier")
    models.load_into(model, models.load_weights(weights), str(weights))
    size = params["model"]["input_size"]
    return batched_forward(model, frames, size, 256), batched_forward(model.features, frames, size, 256)


def propose(root: Path, params: dict, n: int, strategy: str) -> tuple[Path, list[dict]]:
    """Write the next round: `n` frames by `strategy`; returns its path and rows."""
    from maskinspect.data.frames import load_shards, read_index
    from maskinspect.data.labels import read_labelled
    from maskinspect.data.selection import selection
    from maskinspect.data.strategies import pick, softmax
    from maskinspect.workflow.layout import layout

    lay = layout(params, root)
    if not lay.from_videos:
        raise PipelineError(f"data.source is {lay.source}: rounds choose among video frames (labelled folders "
                            f"are labelled already)")
    embeddings = np.load(_need(root, EMBEDDINGS[0], "embeddings"), allow_pickle=False)
    ids = read_labelled(_need(root, EMBEDDINGS[1], "embeddings"))[0]
    rows = {r["frame_id"]: r for path in lay.indexes for r in read_index(root / path)}
    result, _n, _test_n = selection(embeddings, ids, rows, params["select"], EMBEDDINGS[1])
    selected = read_labelled(_need(root, SELECTED, "selection"))[0]
    at = {fid: i for i, fid in enumerate(ids)}
    labelled = [at[f] for f in selected if f in at]
    # the model's outputs: what the model-driven strategies choose by, and the guess beside every frame
    frames = load_shards([root / s for s in lay.video_shards]).take(ids, "embedded frame")
    logits, features = model_outputs(root, params, frames)
    chosen = pick(strategy, n, result.pool, labelled, embeddings, params["select"]["seed"] + len(lay.rounds) + 1,
                  logits=logits, features=features)
    if not chosen:
        raise PipelineError("every training frame is selected already: no round to propose")
    probs = softmax(logits[chosen])
    out = [{"frame_id": ids[i], "rank": r, "strategy": strategy, "guess": CLASSES[int(p.argmax())],
            "confidence": f"{float(p.max()):.3f}"} for r, (i, p) in enumerate(zip(chosen, probs))]
    path = root / ROUNDS / f"round-{len(lay.rounds) + 1:02d}.csv"
    write_csv(path, ("frame_id", "rank", "strategy", "guess", "confidence"),
              [[row[k] for k in ("frame_id", "rank", "strategy", "guess", "confidence")] for row in out])
    return path, out


def say(path: Path, rows: list[dict], root: Path) -> None:
    sure = np.mean([float(r["confidence"]) for r in rows])
    print(f"{path.relative_to(root)}: {len(rows)} frames to label ({rows[0]['strategy']}; the model's mean "
          f"confidence in them {sure:.2f}). Keep it in git, run the build: it asks for their labels, in this order.",
          file=sys.stderr)


def read_round(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))

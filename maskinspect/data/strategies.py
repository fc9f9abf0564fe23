"""Which unlabelled frames to label next: the strategies compared in benchmarks/label_efficiency.py
and used by `maskinspect propose` for a round of active learning.

Each takes the pool (indices of frames that may be chosen), what is labelled already, and returns
`n` more pool indices, most wanted first. The model-free ones work on the self-supervised
embeddings; the model-driven ones on a classifier's outputs for the pool.

- random: a seeded shuffle; the baseline every claim is measured against.
- coreset: k-center greedy on the embeddings (Sener and Savarese, ICLR 2018): each frame the
  farthest from every frame chosen before it; what the selection stage has always done.
- typiclust: TypiClust (Hacohen, Dekel and Weinshall, ICML 2022): cluster the embeddings into as
  many clusters as labels will exist, and from each cluster no label reaches yet take its most
  typical frame (the densest: the inverse mean distance to its 20 nearest neighbours). Made for
  the low budgets where uncertainty and the coreset do no better than random ("cold start").
- margin: the frames whose top two class probabilities are closest (Scheffer et al. 2001), in rounds.
- badge: BADGE (Ash et al., ICLR 2020): each frame's gradient embedding for the class the model
  predicts, (p - onehot) x its penultimate features, whose length is the uncertainty, seeded with
  k-means++ over them (diversity): uncertainty and diversity in one choice, in rounds.
"""
from __future__ import annotations

import numpy as np

from maskinspect.data.selection import k_center_greedy, unit_length

MODEL_FREE = ("random", "coreset", "typiclust")
MODEL_DRIVEN = ("margin", "badge")
STRATEGIES = MODEL_FREE + MODEL_DRIVEN


def random_pick(pool: list[int], labelled: list[int], n: int, rng: np.random.Generator) -> list[int]:
    taken = set(labelled)
    left = [i for i in pool if i not in taken]
    return [left[i] for i in rng.permutation(len(left))[:n]]


def coreset_pick(embeddings: np.ndarray, pool: list[int], labelled: list[int], n: int,
                 rng: np.random.Generator) -> list[int]:
    """k-center greedy over the pool, continuing from what is labelled (a random start when nothing is)."""
    points = unit_length(embeddings[pool])
    at = {p: k for k, p in enumerate(pool)}
    known = [at[i] for i in labelled if i in at]
    if not known:
        order = k_center_greedy(points, n, int(rng.integers(len(pool))))
        return [pool[k] for k in order]
    order = k_center_greedy(points, len(known) + n, known[0], chosen=known)
    known_set = set(known)
    return [pool[k] for k in order if k not in known_set][:n]


def _typicality(points: np.ndarray, neighbours: int) -> np.ndarray:
    """Inverse mean distance to the nearest `neighbours` (TypiClust's density), in bounded memory
    (a tree or chunked distances, never the whole distance matrix)."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(neighbours, len(points) - 1))
    if len(points) < 2:
        return np.ones(len(points))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)


def typiclust_pick(embeddings: np.ndarray, pool: list[int], labelled: list[int], n: int, seed: int,
                   neighbours: int = 20) -> list[int]:
    """As the paper's code has it: |labelled| + n clusters; the largest clusters no label reaches yet
    first; in each, the most typical frame by its neighbours within the cluster (at most 20, at most
    half the cluster)."""
    from sklearn.cluster import KMeans

    points = unit_length(embeddings[pool])
    k = min(len(pool), len(labelled) + n)
    clusters = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(points)
    at = {p: i for i, p in enumerate(pool)}
    covered = {clusters[at[i]] for i in labelled if i in at}
    sizes = np.bincount(clusters, minlength=k)
    chosen: list[int] = []
    for c in sorted(range(k), key=lambda c: -sizes[c]):  # the largest uncovered clusters first
        if len(chosen) == n:
            break
        if c in covered:
            continue
        members = np.flatnonzero(clusters == c)
        typical = _typicality(points[members], min(neighbours, len(members) // 2))
        chosen.append(pool[int(members[np.argmax(typical)])])
    if len(chosen) < n:  # more labels than clusters left: the most typical of the rest
        taken = set(labelled) | set(chosen)
        rest = [i for i in np.argsort(-_typicality(points, neighbours), kind="stable") if pool[i] not in taken]
        chosen += [pool[int(i)] for i in rest[: n - len(chosen)]]
    return chosen


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def margin_pick(logits: np.ndarray, pool: list[int], labelled: list[int], n: int) -> list[int]:
    """`logits`: the model's outputs for every frame (indexed like the embeddings)."""
    taken = set(labelled)
    left = [i for i in pool if i not in taken]
    p = np.sort(softmax(logits[left]), axis=1)
    margin = p[:, -1] - p[:, -2]
    return [left[i] for i in np.argsort(margin, kind="stable")[:n]]


def badge_pick(logits: np.ndarray, features: np.ndarray, pool: list[int], labelled: list[int], n: int,
               rng: np.random.Generator) -> list[int]:
    """`features`: the classifier's penultimate features for every frame."""
    taken = set(labelled)
    left = [i for i in pool if i not in taken]
    p = softmax(logits[left])
    onehot = np.eye(p.shape[1])[p.argmax(axis=1)]
    grads = ((p - onehot)[:, :, None] * features[left][:, None, :]).reshape(len(left), -1)
    # k-means++ seeding: the first the longest gradient, then each with probability by its squared
    # distance to the nearest chosen
    chosen = [int(np.argmax((grads ** 2).sum(axis=1)))]
    nearest = ((grads - grads[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(n, len(left)):
        weights = nearest / nearest.sum() if nearest.sum() > 0 else np.full(len(left), 1 / len(left))
        nxt = int(rng.choice(len(left), p=weights))
        if nxt in chosen:
            nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, ((grads - grads[nxt]) ** 2).sum(axis=1))
        nearest[chosen] = 0.0
    return [left[i] for i in chosen]


def pick(strategy: str, n: int, pool: list[int], labelled: list[int], embeddings: np.ndarray, seed: int,
         logits: np.ndarray | None = None, features: np.ndarray | None = None) -> list[int]:
    """`n` more frames of `pool` to label by `strategy` (a model's logits and penultimate features
    for every frame for the model-driven ones)."""
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return random_pick(pool, labelled, n, rng)
    if strategy == "coreset":
        return coreset_pick(embeddings, pool, labelled, n, rng)
    if strategy == "typiclust":
        return typiclust_pick(embeddings, pool, labelled, n, seed)
    if logits is None:
        raise ValueError(f"{strategy} needs a model's outputs")
    if strategy == "margin":
        return margin_pick(logits, pool, labelled, n)
    if strategy == "badge":
        return badge_pick(logits, features, pool, labelled, n, rng)
    raise ValueError(f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")

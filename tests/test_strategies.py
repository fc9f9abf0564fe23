"""The strategies that choose frames to label (maskinspect/data/strategies.py): each keeps what it
promises on data built so that the promise can be seen."""
from __future__ import annotations

import numpy as np
import pytest

from maskinspect.data.strategies import STRATEGIES, pick, softmax


def blobs(centres: int, per: int, dim: int = 8, seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """`centres` tight, far-apart clusters of `per` points each, and which cluster each point is in."""
    rng = np.random.default_rng(seed)
    middle = np.eye(dim)[:centres] if centres <= dim else rng.normal(size=(centres, dim))
    which = np.repeat(np.arange(centres), per)
    return middle[which] + spread * rng.normal(size=(len(which), dim)), which


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_returns_new_distinct_pool_frames(strategy):
    points, _ = blobs(4, 30)
    pool = list(range(0, 120, 2))           # half the frames may be chosen
    labelled = pool[:5]
    logits = np.random.default_rng(1).normal(size=(120, 3))
    got = pick(strategy, 12, pool, labelled, points, seed=3, logits=logits, features=points)
    assert len(got) == 12 == len(set(got))
    assert set(got) <= set(pool) - set(labelled)
    assert got == pick(strategy, 12, pool, labelled, points, seed=3, logits=logits, features=points)  # seeded


def test_coreset_goes_first_to_the_clusters_nothing_labelled_reaches():
    points, which = blobs(6, 20)
    pool = list(range(len(points)))
    labelled = [int(np.flatnonzero(which == c)[0]) for c in (0, 1)]   # clusters 0 and 1 have labels
    got = pick("coreset", 4, pool, labelled, points, seed=0)
    assert sorted(which[got]) == [2, 3, 4, 5]


def test_typiclust_takes_one_typical_frame_from_each_cluster():
    points, which = blobs(5, 40)
    # one outlier per cluster, far from its fellows: never the typical one
    outliers = [int(np.flatnonzero(which == c)[0]) for c in range(5)]
    points[outliers] += 0.6
    pool = list(range(len(points)))
    got = pick("typiclust", 5, pool, [], points, seed=0)
    assert sorted(which[got]) == [0, 1, 2, 3, 4]
    assert not set(got) & set(outliers)


def test_typiclust_skips_the_clusters_labels_reach_and_keeps_memory_bounded():
    points, which = blobs(3, 20_000, dim=16)     # a pool of 60,000: a distance matrix would be 14 GB
    pool = list(range(len(points)))
    labelled = [int(np.flatnonzero(which == 0)[0])]
    got = pick("typiclust", 2, pool, labelled, points, seed=0)
    assert sorted(which[got]) == [1, 2]


def test_margin_takes_the_frames_the_model_is_least_sure_of_least_sure_first():
    logits = np.array([[5, 0, 0], [1, 0.9, 0], [2, 0, 0], [0.5, 0.45, 0.0], [0, 3, 0]], dtype=float)
    p = np.sort(softmax(logits), axis=1)
    order = list(np.argsort(p[:, -1] - p[:, -2]))
    assert pick("margin", 2, [0, 1, 2, 3, 4], [], np.zeros((5, 2)), seed=0, logits=logits) == order[:2] == [3, 1]
    assert pick("margin", 2, [0, 1, 2, 3, 4], [3], np.zeros((5, 2)), seed=0, logits=logits) == [1, 2]


def test_badge_prefers_uncertain_frames_and_spreads_over_the_feature_space():
    # Tight clusters: a second frame of a chosen cluster is then a millionth as likely as a new
    # cluster's (k-means++ draws by squared distance), whatever the seed.
    features, which = blobs(4, 25, spread=0.001)
    logits = np.zeros((100, 3))
    logits[:, 0] = 8.0                        # sure of every frame...
    uncertain = [int(np.flatnonzero(which == c)[k]) for c in range(4) for k in (0, 1)]
    logits[uncertain] = [0.3, 0.2, 0.1]       # ...but two frames of each cluster
    got = pick("badge", 5, list(range(100)), [], features, seed=0, logits=logits, features=features)
    # The sure frames' gradients are all near zero, one point: k-means++ takes at most one of them.
    assert len(set(got) - set(uncertain)) <= 1
    # Diversity: the unsure frames it takes come one from each cluster.
    assert sorted(which[[g for g in got if g in uncertain]]) == [0, 1, 2, 3]


def test_a_model_driven_strategy_without_a_model_is_refused():
    with pytest.raises(ValueError, match="margin needs a model's outputs"):
        pick("margin", 1, [0, 1], [], np.zeros((2, 2)), seed=0)

"""Which frames to label: k-center greedy coreset on the embeddings (Sener and Savarese,
2018; what the published project did through Lightly's hosted service), and a random
test sample kept apart from it.

The test sample comes from whole time blocks of each video (block_seconds long) that
the coreset never draws from: consecutive video frames are near-duplicates, and a
test frame one frame away from a training frame would flatter the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskinspect.errors import PipelineError


def k_center_greedy(points: np.ndarray, n: int, first: int, chosen: list[int] | None = None) -> list[int]:
    """Indices of `n` points, each the farthest from those chosen before it (starting from `first`,
    or from every index of `chosen` when given: a selection continued).

    Vectorised: one pass over all points per pick (O(n * N * d)); 25,000 x 16 and n = 200
    takes a fraction of a second. Never returns an index twice.
    """
    points = np.asarray(points, dtype=np.float64)
    count = len(points)
    if not 0 <= first < count:
        raise ValueError("first index out of range")
    n = min(n, count)
    chosen = list(chosen) if chosen else [first]
    min_dist = np.min([((points - points[c]) ** 2).sum(axis=1) for c in chosen], axis=0)
    min_dist[chosen] = -1.0  # chosen points can never win again, even among duplicates
    for _ in range(n - len(chosen)):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        d = ((points - points[nxt]) ** 2).sum(axis=1)
        np.minimum(min_dist, d, out=min_dist)
        min_dist[chosen] = -1.0
    return chosen


def unit_length(points: np.ndarray) -> np.ndarray:
    """Unit length rows: SimCLR embeddings are compared by angle."""
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return points / np.maximum(norms, 1e-12)


@dataclass
class Split:
    selected: list[int]   # indices to label for training, in coreset order
    test: list[int]       # indices of the test sample, sorted
    test_blocks: int
    blocks: int
    pool: list[int]       # every index outside the test blocks: what training frames come from


def time_blocks(videos: list[str], times: list[float | None], numbers: list[int], block_seconds: float) -> list[tuple]:
    """A block key per frame: (video, block number)."""
    keys = []
    for video, t, n in zip(videos, times, numbers):
        seconds = t if t is not None else float(n)
        keys.append((video, int(seconds // block_seconds)))
    return keys


def split(embeddings: np.ndarray, blocks: list[tuple], n_select: int, n_test: int, test_fraction: float,
          seed: int, normalize: bool = True) -> Split:
    """Coreset selection of n_select frames, test sample of n_test from held-out blocks."""
    count = len(embeddings)
    if count != len(blocks):
        raise PipelineError(f"{count} embeddings but {len(blocks)} frames in the index")
    if count == 0:
        raise PipelineError("no frames to select from")
    rng = np.random.default_rng(seed)
    unique = sorted(set(blocks))
    order = rng.permutation(len(unique))
    by_block: dict[tuple, list[int]] = {}
    for i, b in enumerate(blocks):
        by_block.setdefault(b, []).append(i)
    test_pool: list[int] = []
    test_blocks = 0
    target = test_fraction * count
    for j in order:
        if len(test_pool) >= target or (n_test == 0):
            break
        test_pool.extend(by_block[unique[j]])
        test_blocks += 1
    if n_test > 0 and test_blocks == len(unique) and len(unique) > 1:
        # Never give every block to the test pool: the coreset needs some.
        last = set(by_block[unique[order[test_blocks - 1]]])
        test_pool = [i for i in test_pool if i not in last]
        test_blocks -= 1
    test_set = set(test_pool)
    pool = np.array([i for i in range(count) if i not in test_set])
    if len(pool) == 0:
        raise PipelineError("no frames left for selection after setting the test blocks apart "
                            "(lower select.test_fraction or select.block_seconds)")
    points = embeddings[pool]
    if normalize:
        points = unit_length(points)
    first = int(rng.integers(len(pool)))
    selected = [int(pool[i]) for i in k_center_greedy(points, n_select, first)]
    test = sorted(int(i) for i in rng.choice(np.array(test_pool, dtype=int), size=min(n_test, len(test_pool)),
                                             replace=False)) if test_pool and n_test else []
    return Split(selected=selected, test=test, test_blocks=test_blocks, blocks=len(unique),
                 pool=[int(i) for i in pool])


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project to the two principal axes (deterministic signs)."""
    from sklearn.decomposition import PCA

    if len(points) < 2:
        return np.zeros((len(points), 2))
    proj = PCA(n_components=min(2, points.shape[1]), svd_solver="full").fit_transform(points)
    proj *= np.sign(proj[np.abs(proj).argmax(axis=0), range(proj.shape[1])])  # fix the sign ambiguity
    if proj.shape[1] == 1:
        proj = np.hstack([proj, np.zeros_like(proj)])
    return proj


def selection(emb, ids: list[str], rows: dict, cfg: dict, where: str):
    """The coreset and the test sample for these embeddings (the same whoever asks: the stage, and
    `maskinspect propose`, which must know the pool a round chooses from); with the budgets."""
    missing = [i for i in ids if i not in rows]
    if missing:
        raise PipelineError(f"{where}: frame {missing[0]} is in no frame index ({len(missing)} missing)")
    videos = [rows[i]["video"] for i in ids]
    times = [float(rows[i]["time"]) if rows[i]["time"] else None for i in ids]
    numbers = [int(rows[i]["frame"]) for i in ids]
    blocks = time_blocks(videos, times, numbers, cfg["block_seconds"])
    n, test_n = budgets(cfg, len(ids))
    return split(emb, blocks, n, test_n, cfg["test_fraction"], cfg["seed"], cfg["normalize"]), n, test_n


def round_frames(rounds, ids: list[str], result) -> list[str]:
    """The frames the rounds add, in order, each once; one that is not a training frame of this
    selection (unknown, or in a test block) is an error naming its file and line."""
    pool = {ids[i] for i in result.pool}
    have = {ids[i] for i in result.selected}
    added = []
    from maskinspect.data.labels import read_labelled

    for path in rounds:
        for line, fid in enumerate(read_labelled(path)[0], start=2):
            if fid not in pool:
                raise PipelineError(f"{path} line {line}: {fid} is not a training frame of this selection "
                                    f"({'in a test block' if fid in ids else 'no such frame'}); propose the round again")
            if fid not in have:
                have.add(fid)
                added.append(fid)
    return added


def budgets(cfg: dict, frames: int) -> tuple[int, int]:
    """How many frames to label: to train on, at most select.n and select.share of the frames; to
    test on, at most select.test_n and select.test_share of them (at least one each)."""
    n = min(cfg["n"], max(1, round(cfg["share"] * frames)))
    test_n = min(cfg["test_n"], max(1, round(cfg["test_share"] * frames))) if cfg["test_n"] else 0
    return n, test_n

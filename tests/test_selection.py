"""Coreset selection and the test sample."""
import csv

import numpy as np
from conftest import run_script, tiny_params, write_params
from maskinspect.selection import k_center_greedy, split, time_blocks


def test_k_center_picks_the_spread_out_points_first():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.05, size=(200, 2))
    corners = np.array([[10, 10], [-10, 10], [10, -10], [-10, -10]], dtype=float)
    points = np.vstack([cluster, corners])
    picked = k_center_greedy(points, 5, first=0)
    assert picked[0] == 0
    assert set(picked[1:]) == {200, 201, 202, 203}


def test_k_center_never_repeats_even_with_duplicates():
    points = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), 10, axis=0)
    picked = k_center_greedy(points, 30, first=4)
    assert len(picked) == 30 and len(set(picked)) == 30
    assert {points[i].tobytes() for i in picked[:3]} == {p.tobytes() for p in points[[0, 10, 20]]}


def test_k_center_covers_better_than_random():
    rng = np.random.default_rng(1)
    points = np.vstack([rng.normal(c, 0.3, size=(n, 8)) for c, n in ((0, 990), (5, 5), (-5, 5))])
    chosen = k_center_greedy(points, 20, first=0)
    random_pick = rng.choice(len(points), 20, replace=False)

    def radius(idx):
        d = ((points[:, None, :] - points[idx][None]) ** 2).sum(-1)
        return np.sqrt(d.min(1)).max()

    assert radius(chosen) < 0.6 * radius(random_pick)


def test_split_keeps_test_blocks_apart():
    rng = np.random.default_rng(2)
    videos = ["a"] * 100 + ["b"] * 100
    times = [i / 10 for i in range(100)] * 2
    blocks = time_blocks(videos, times, list(range(200)), block_seconds=1.0)
    result = split(rng.normal(size=(200, 16)), blocks, n_select=30, n_test=25, test_fraction=0.3, seed=0)
    assert len(result.selected) == 30 and len(set(result.selected)) == 30
    assert len(result.test) == 25 and not set(result.test) & set(result.selected)
    test_blocks = {blocks[i] for i in result.test}
    assert not test_blocks & {blocks[i] for i in result.selected}
    assert result.blocks == 20 and 0 < result.test_blocks < 20


def test_select_stage_writes_lists_and_map(demo_data, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    emb = np.random.default_rng(3).normal(size=(120, 16)).astype("float32")
    np.save(tmp_path / "emb.npy", emb)
    with (tmp_path / "ids.csv").open("w") as f:
        ids = [r.split(",")[0] for p in sorted((demo_data / "frames").glob("*.csv")) for r in p.read_text().splitlines()[1:]]
        f.write("frame_id\n" + "\n".join(ids) + "\n")
    indexes = sorted((demo_data / "frames").glob("*.csv"))
    run_script("select_frames.py", "--embeddings", "emb.npy", "--ids", "ids.csv", "--index", *indexes,
               "--selected", "sel.csv", "--test-sample", "test.csv", "--map", "map.png", cwd=tmp_path)
    with (tmp_path / "sel.csv").open() as f:
        selected = [r["frame_id"] for r in csv.DictReader(f)]
    with (tmp_path / "test.csv").open() as f:
        test = [r["frame_id"] for r in csv.DictReader(f)]
    assert len(selected) == 40 and len(test) == 30 and not set(selected) & set(test)
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "ids.csv").write_text("frame_id\nnope-000001\n")  # an id no index knows
    np.save(tmp_path / "emb.npy", emb[:1])
    bad = run_script("select_frames.py", "--embeddings", "emb.npy", "--ids", "ids.csv", "--index", *indexes,
                     "--selected", "s2.csv", "--test-sample", "t2.csv", "--map", "m2.png", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "frame nope-000001 is in no frame index" in bad.stderr
    assert not (tmp_path / "s2.csv").exists()

"""Coreset selection and the test sample."""
import csv

import numpy as np
import pytest
from conftest import run_script, tiny_params, write_params
from maskinspect.data.selection import k_center_greedy, split, time_blocks


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


# -- rounds of active learning ------------------------------------------------------------------------

def _margins(root):
    """Each frame's margin under the classifier the build made, by frame id, and the training pool."""
    import numpy as np

    from maskinspect.command.propose import model_outputs
    from maskinspect.data.frames import load_shards, read_index
    from maskinspect.data.labels import read_labelled
    from maskinspect.data.selection import selection
    from maskinspect.data.strategies import softmax
    from maskinspect.workflow import params as params_mod

    params = params_mod.load(root / "params.yaml")
    ids = read_labelled(root / "data/embeddings/ids.csv")[0]
    rows = {r["frame_id"]: r for p in sorted((root / "data/frames").glob("demo-*.csv")) for r in read_index(p)}
    result, _n, _t = selection(np.load(root / "data/embeddings/embeddings.npy"), ids, rows, params["select"], "ids")
    frames = load_shards(sorted((root / "data/frames").glob("demo-*.npy"))).take(ids, "frame")
    p = np.sort(softmax(model_outputs(root, params, frames)[0]), axis=1)
    return dict(zip(ids, p[:, -1] - p[:, -2])), {ids[i] for i in result.pool}


@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_two_rounds_add_the_frames_the_model_is_least_sure_of_and_the_build_retrains_on_them(built_copy):
    import json
    import subprocess

    from conftest import ROOT, venv_env

    root = built_copy
    maskinspect = str(ROOT / ".venv" / "bin" / "maskinspect")
    before = json.loads((root / "metrics/finetune.json").read_text())
    test_sample = (root / "data/selection/test.csv").read_bytes()
    selected = [r["frame_id"] for r in csv.DictReader((root / "data/selection/selected.csv").open())]
    rounds = []
    for n in (1, 2):
        margins, pool = _margins(root)
        result = subprocess.run([maskinspect, "propose", "--next", "8", "--strategy", "margin"], cwd=root,
                                capture_output=True, text=True, env=venv_env(), timeout=600)
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader((root / f"data/selection/rounds/round-{n:02d}.csv").open()))
        chosen = [r["frame_id"] for r in rows]
        candidates = sorted((m, f) for f, m in margins.items() if f in pool and f not in set(selected))
        assert chosen == [f for _m, f in candidates[:8]]  # the model's least sure, least sure first
        assert all(r["guess"] in ("bad", "good", "no_mask") and 0 < float(r["confidence"]) <= 1 for r in rows)
        rounds.append(chosen)
        build = subprocess.run(["snakemake", "--cores", "2"], cwd=root, capture_output=True, text=True,
                               env=venv_env(), timeout=1800)
        assert build.returncode == 0, build.stderr[-3000:]
        now = [r["frame_id"] for r in csv.DictReader((root / "data/selection/selected.csv").open())]
        assert now == selected + chosen  # the round's frames join the selection, in its order
        selected = now
        after = json.loads((root / "metrics/finetune.json").read_text())
        assert after["train_count"] == before["train_count"] + 8 * n  # retrained on them (the demo's truth labels)
        assert (root / "data/selection/test.csv").read_bytes() == test_sample  # the test sample never moves
    assert not set(rounds[0]) & set(rounds[1])
    assert "Data and pipelines are up to date." in subprocess.run(["dvc", "status"], cwd=root, capture_output=True,
                                                                   text=True, env=venv_env()).stdout

"""The batched SimCLR views (maskinspect/model/augment.py): the same bytes from the same seed, the
transforms in the proportions the settings ask for, and a pretraining on them that learns; the
GPU check's script runs (on the CPU here)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, venv_env
from maskinspect.model.augment import BatchedViews

TRANSFORM = {"min_scale": 0.5, "cj_prob": 0.5, "cj_strength": 0.5, "gray_prob": 0.2, "blur_prob": 0.0,
             "hflip_prob": 0.5, "vflip_prob": 0.5}


def frames(n=256, seed=0):
    """Frames whose left half is dark and right half bright: a flip shows in the mean of each half."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (n, 64, 64, 3), dtype=np.uint8)
    x[:, :, 32:] += 200
    x[:, :, :, 0] = np.clip(x[:, :, :, 0].astype(int) + 10, 0, 255).astype(np.uint8)  # not grey
    return torch.from_numpy(x)


def test_the_same_seed_gives_the_same_views_and_another_seed_others():
    x = frames()
    a0, a1 = BatchedViews(TRANSFORM, 64, 7, torch.device("cpu"))(x)
    b0, b1 = BatchedViews(TRANSFORM, 64, 7, torch.device("cpu"))(x)
    c0, _ = BatchedViews(TRANSFORM, 64, 8, torch.device("cpu"))(x)
    assert torch.equal(a0, b0) and torch.equal(a1, b1)
    assert not torch.equal(a0, a1) and not torch.equal(a0, c0)  # two views differ; seeds differ
    assert a0.shape == (256, 3, 64, 64) and a0.dtype == torch.float32
    assert float(a0.min()) >= 0 and float(a0.max()) <= 1


def test_flips_grey_and_crops_come_in_the_proportions_asked():
    x = frames(2048)
    views = BatchedViews({**TRANSFORM, "cj_prob": 0.0}, 64, 0, torch.device("cpu"))
    v = views.view(x)
    flipped = (v[:, :, :, :32].mean((1, 2, 3)) > v[:, :, :, 32:].mean((1, 2, 3))).float().mean()
    grey = ((v[:, 0] - v[:, 1]).abs().amax((1, 2)) < 1e-6).float().mean()
    assert abs(float(flipped) - 0.5) < 0.05
    assert abs(float(grey) - 0.2) < 0.04
    none = BatchedViews({**TRANSFORM, "min_scale": 1.0, "hflip_prob": 0.0, "vflip_prob": 0.0, "gray_prob": 0.0,
                         "cj_prob": 0.0}, 64, 0, torch.device("cpu")).view(x[:8])
    # scale 1 and an aspect near 1: the frame itself, up to the bilinear sampling of a small stretch
    assert float((none - x[:8].permute(0, 3, 1, 2).float() / 255).abs().mean()) < 0.08


def test_colour_jitter_changes_only_the_samples_it_is_drawn_for():
    x = frames(512)
    off = BatchedViews({**TRANSFORM, "cj_prob": 0.0, "gray_prob": 0.0}, 64, 3, torch.device("cpu")).view(x)
    on = BatchedViews({**TRANSFORM, "cj_prob": 1.0, "gray_prob": 0.0}, 64, 3, torch.device("cpu")).view(x)
    changed = ((on - off).abs().amax((1, 2, 3)) > 1e-4).float().mean()
    assert float(changed) > 0.95


def test_pretraining_on_batched_views_is_deterministic_and_learns(demo_data):
    from maskinspect.data.frames import load_shards
    from maskinspect.model import models
    from maskinspect.model.pretrain import pretrain
    from maskinspect.model.training import seed_everything
    from maskinspect.workflow import params as params_mod

    params = params_mod.load(ROOT / "params.yaml")
    cfg = {**params["pretrain"], "augment": "batched", "epochs": 3, "batch_size": 32}
    images = np.asarray(load_shards(sorted((demo_data / "frames").glob("*.npy"))).images)
    runs = []
    for _ in range(2):
        seed_everything(cfg["seed"])
        backbone = models.build_backbone(params["model"])
        result = pretrain(backbone, images, cfg, params["model"], dev=torch.device("cpu"))
        runs.append((backbone.state_dict(), result.losses))
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0]) and runs[0][1] == runs[1][1]
    assert runs[0][1][-1] < runs[0][1][0]


@pytest.mark.slow  # the whole GPU check script, on the CPU: about 25 s
def test_the_gpu_check_runs_and_reports_its_four_parts(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu", "--quick",
                             "--out", str(tmp_path)], capture_output=True, text=True, env=venv_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pairs a second" in result.stdout and "identical bytes" in result.stdout and "grey share" in result.stdout
    assert "fine-tuning's camera path" in result.stdout and "batched 256, cpu" in result.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    camera = report["camera_augmentation"]
    assert all(rate > 0 for rate in camera["samples_per_s"].values()), camera
    assert abs(camera["statistics"]["device"]["mean"] - camera["statistics"]["cpu"]["mean"]) < 1e-6  # both the CPU here

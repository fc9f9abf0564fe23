"""Pretraining and fine-tuning on tiny data: deterministic, and learning for real."""
import hashlib

import numpy as np
import pytest

from conftest import MODEL_CFG, outside_input, pin, run_script, separable_frames, tiny_params, write_params
from maskinspect import CLASSES
from maskinspect.model import models
from maskinspect.errors import PipelineError
from maskinspect.model.evaluation import labels_of, report
from maskinspect.model.finetune import class_weights, finetune
from maskinspect.model.training import batched_forward, seed_everything


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pretraining_is_deterministic_and_lowers_the_loss(demo_data, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params(**{"demo_recipe.pretrain.epochs": 3, "pretrain.batch_size": 40}))
    shards = sorted((demo_data / "frames").glob("*.npy"))
    for run in ("a", "b"):
        run_script("pretrain.py", "--frames", *shards, "--backbone", f"{run}.safetensors", "--loss", f"{run}.csv",
                   cwd=tmp_path)
    assert sha(tmp_path / "a.safetensors") == sha(tmp_path / "b.safetensors")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    losses = [float(line.split(",")[1]) for line in (tmp_path / "a.csv").read_text().splitlines()[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    state = models.load_weights(tmp_path / "a.safetensors")
    assert set(state) == set(models.build_backbone(MODEL_CFG).state_dict())


def test_published_checkpoint_used_as_is(demo_data, tmp_path):
    ckpt = outside_input("published-checkpoint")
    write_params(tmp_path / "params.yaml", tiny_params(**{"demo_recipe.pretrain.epochs": 0,
                                                                 "demo_recipe.pretrain.init": "pinned:published-checkpoint"}))
    run_script("pretrain.py", "--frames", *sorted((demo_data / "frames").glob("*.npy")),
               "--init", pin("published-checkpoint"),
               "--backbone", "b.safetensors", "--loss", "l.csv", cwd=tmp_path)
    ours = models.load_weights(tmp_path / "b.safetensors")
    published = models.read_lightly_checkpoint(ckpt)
    assert all(np.array_equal(ours[k].numpy(), published[k].numpy()) for k in published)
    assert (tmp_path / "l.csv").read_text() == "epoch,loss\n"


def test_pretrain_epochs_zero_needs_weights(demo_data, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params(**{"demo_recipe.pretrain.epochs": 0}))
    result = run_script("pretrain.py", "--frames", *sorted((demo_data / "frames").glob("*.npy")),
                        "--backbone", "b.safetensors", "--loss", "l.csv", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "pretrain.epochs is 0 but pretrain.init names no weights" in result.stderr


def test_finetuning_beats_chance_clearly_on_separable_data():
    params = tiny_params()
    cfg = dict(params["finetune"], mode="full", epochs=40, batch_size=32)
    train_x, train_y = separable_frames(30, seed=0)
    test_x, test_y = separable_frames(20, seed=1)
    seed_everything(cfg["seed"])
    model = models.build_classifier(MODEL_CFG)
    result = finetune(model, train_x, train_y, cfg, 64)
    assert len(result.curve) == 40 and result.curve[-1]["loss"] < result.curve[0]["loss"]
    metrics = report([CLASSES[t] for t in test_y], labels_of(batched_forward(model, test_x, 64, 64)))
    assert metrics["balanced_accuracy"] >= 0.9, metrics  # chance is 0.33


def test_frozen_mode_leaves_the_backbone_untouched():
    params = tiny_params()
    cfg = dict(params["finetune"], mode="frozen", epochs=2, batch_size=16)
    x, y = separable_frames(8, seed=2)
    seed_everything(0)
    model = models.build_classifier(MODEL_CFG)
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    finetune(model, x, y, cfg, 64)
    after = model.features.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_class_weights_balance_and_missing_class_is_an_error():
    w = class_weights(np.array([0] * 10 + [1] * 30 + [2] * 60))
    assert np.allclose(w.numpy(), [100 / 30, 100 / 90, 100 / 180])
    with pytest.raises(PipelineError, match="no training frames labelled bad"):
        class_weights(np.array([1, 2, 2]))
    heavy = class_weights(np.array([0] * 10 + [1] * 30 + [2] * 60), bad_weight=2.5)
    assert np.allclose(heavy.numpy(), [2.5 * 100 / 30, 100 / 90, 100 / 180])


def test_bad_weight_turns_doubtful_frames_into_bad():
    """Frames with nothing to tell the classes apart (noise, labels at random): the balanced loss
    leaves `bad` one answer of three; a `bad` weighing 10 times the others makes it the answer
    that minimises the loss everywhere, so the classifier says `bad` to (nearly) every frame."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(60, 64, 64, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    test_x = rng.integers(0, 256, size=(30, 64, 64, 3), dtype=np.uint8)
    said_bad = {}
    for bad_weight in (1.0, 10.0):
        cfg = dict(tiny_params()["finetune"], mode="frozen", epochs=15, batch_size=20, bad_weight=bad_weight)
        seed_everything(0)
        model = models.build_classifier(MODEL_CFG)
        finetune(model, x, y, cfg, 64)
        said_bad[bad_weight] = labels_of(batched_forward(model, test_x, 64, 64)).count("bad")
    assert said_bad[10.0] >= 27 and said_bad[10.0] > said_bad[1.0], said_bad


def test_crossval_in_an_early_round_says_what_to_label_and_stops_nothing(demo_data, tmp_path):
    """One `bad` label for 2 folds: not an error (the bundle is built already) but a verdict that
    names the counts and the next step, written where the report reads it, and exit 0."""
    import csv
    import json
    write_params(tmp_path / "params.yaml", tiny_params())  # crossval.folds 2
    truth = list(csv.DictReader((demo_data / "truth.csv").open()))
    picked = ([r for r in truth if r["label"] == "bad"][:1] + [r for r in truth if r["label"] == "good"][:3]
              + [r for r in truth if r["label"] == "no_mask"][:2])
    (tmp_path / "train.csv").write_text("frame_id,label\n" + "".join(f"{r['frame_id']},{r['label']}\n" for r in picked))
    shards = sorted((demo_data / "frames").glob("*.npy"))
    result = run_script("crossval.py", "--backbone", "absent.safetensors", "--frames", *shards, "--camera", *shards,
                        "--train-labels", "train.csv", "--metrics", "cv.json", cwd=tmp_path)
    verdict = ("No cross-validation yet: 2 folds need at least 2 labelled frames of each class to train on, and "
               "there are bad 1, good 3, no_mask 2. Label more (maskinspect propose adds a round).")
    assert result.stderr.strip().splitlines()[-1] == f"crossval: {verdict}"
    cv = json.loads((tmp_path / "cv.json").read_text())
    assert cv["skipped"] == verdict and cv["curve"] == {"verdict": verdict, "points": []} and cv["labelled"] == 6


def test_pretraining_from_the_files_a_frame_at_a_time_gives_the_bytes_of_the_frames_in_memory(demo_data):
    """The stage hands pretrain the frame store (each frame read from its file, so 60,000 frames
    never sit in the process's memory); the weights are those of the same frames as one array."""
    import torch

    from maskinspect.data.frames import load_shards
    from maskinspect.model.pretrain import pretrain
    from maskinspect.workflow import params as params_mod

    params = params_mod.effective(tiny_params(**{"demo_recipe.pretrain.epochs": 1, "pretrain.batch_size": 32}))
    cfg = params["pretrain"]
    assert cfg["augment"] == "pil"
    frames = load_shards(sorted((demo_data / "frames").glob("*.npy")))
    weights = []
    for images in (frames, frames.images):
        torch.manual_seed(0)
        backbone = models.build_backbone(params["model"])
        pretrain(backbone, images, cfg, params["model"], dev=torch.device("cpu"))
        weights.append({k: v.clone() for k, v in backbone.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

"""Fine-tuning's batched augmentation (maskinspect/model/camera_augment.py, finetune.augmenter:
batched): with nothing drawn it is the camera's own input path bit for bit; its flips, shares
and seeds do what they say; its statistics match the PIL path it stands in for; and a
fine-tuning on it is deterministic and learns."""
import numpy as np
import torch
from PIL import Image

from conftest import MODEL_CFG, separable_frames, tiny_params
from maskinspect import CLASSES
from maskinspect.device.camera import SENSOR, camera_pixels
from maskinspect.model import models
from maskinspect.model.camera_augment import BatchedAugment
from maskinspect.model.evaluation import labels_of, report
from maskinspect.model.finetune import CameraPath, augmentation, finetune
from maskinspect.model.training import batched_forward, seed_everything

CPU = torch.device("cpu")
NOTHING = {"color_jitter": 0.0, "hue": 0.0, "rotation": 0, "min_scale": 1.0, "hflip": False, "vflip": False,
           "camera": 1.0, "noise": 0.0}
RECIPE = {"color_jitter": 0.4, "hue": 0.05, "rotation": 15, "min_scale": 0.7, "hflip": True, "vflip": True,
          "camera": 1.0, "noise": 0.0}   # params.yaml's real-data recipe


def scenes(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Coloured gradients with a square of another colour somewhere: structure a crop, a flip
    and a jitter each change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        img = rng.uniform(40, 200, 3)[None, None, :] * (0.6 + 0.4 * xx[..., None]) + 30 * yy[..., None]
        s = size // 4
        x, y = rng.integers(0, size - s, 2)
        img[y:y + s, x:x + s] = rng.uniform(0, 255, 3)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_with_nothing_drawn_the_camera_samples_are_the_cameras_pixels_bit_for_bit():
    sensor = np.random.default_rng(1).integers(0, 256, (6, SENSOR, SENSOR, 3), dtype=np.uint8)
    augment = BatchedAugment(NOTHING, 64, 0, CPU)
    assert np.array_equal(as_uint8(augment.camera(torch.from_numpy(sensor))), camera_pixels(sensor, 64))
    small = sensor[:, :64, :64]  # at the input size already: RGB565 only, as camera_pixels does
    assert np.array_equal(as_uint8(augment.camera(torch.from_numpy(np.ascontiguousarray(small)))),
                          camera_pixels(small, 64))
    stored = torch.from_numpy(sensor[:, :64, :64].copy())
    assert torch.allclose(augment.stored(stored), stored.permute(0, 3, 1, 2).float() / 255, atol=1e-5)


def test_the_same_seed_gives_the_same_batch_another_seed_another():
    frames, sensor = torch.from_numpy(scenes(16, 64)), torch.from_numpy(scenes(16, SENSOR))
    a = BatchedAugment({**RECIPE, "camera": 0.5}, 64, 7, CPU)(frames, sensor, 0.5)
    b = BatchedAugment({**RECIPE, "camera": 0.5}, 64, 7, CPU)(frames, sensor, 0.5)
    c = BatchedAugment({**RECIPE, "camera": 0.5}, 64, 8, CPU)(frames, sensor, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (16, 3, 64, 64) and float(a.min()) >= 0 and float(a.max()) <= 1


def test_the_camera_share_and_the_flips_come_as_asked():
    n = 512
    white = torch.full((n, 64, 64, 3), 255, dtype=torch.uint8)     # stored frames white, sensor frames black:
    black = torch.zeros((n, SENSOR, SENSOR, 3), dtype=torch.uint8)  # the output says which path it took
    out = BatchedAugment({**NOTHING, "camera": 0.3}, 64, 0, CPU)(white, black, 0.3)
    through_camera = (out.mean((1, 2, 3)) < 0.5).float().mean()
    assert abs(float(through_camera) - 0.3) < 0.06
    assert BatchedAugment(NOTHING, 64, 0, CPU)(white, None, 1.0).min() == 1.0  # no sensor frames: stored only

    halves = np.zeros((n, 64, 64, 3), dtype=np.uint8)
    halves[:, :, 32:] = 200                                         # left dark, right bright
    x = torch.from_numpy(halves)
    out = BatchedAugment({**NOTHING, "hflip": True}, 64, 0, CPU).stored(x)
    same = (out - x.permute(0, 3, 1, 2) / 255).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(2).permute(0, 3, 1, 2) / 255).abs().amax((1, 2, 3)) < 1e-5
    assert bool((same ^ mirrored).all())                            # each exactly one of the two
    assert abs(float(mirrored.float().mean()) - 0.5) < 0.06


def statistics(x: np.ndarray) -> dict:
    """Over samples (n, 3, h, w) in [0, 1]: per-channel mean, the spread of the samples' means
    (colour jitter), the mean spread within a sample (contrast, crops) and the black share
    (rotation's corners)."""
    return {"mean": x.mean((0, 2, 3)), "between": x.mean((2, 3)).std(0), "within": x.std((2, 3)).mean(0),
            "black": float((x.sum(1) == 0).mean())}


def test_the_batched_paths_match_the_pil_paths_they_stand_in_for():
    """The same transforms drawn differently (one sampling instead of two, YIQ hue, a fixed jitter
    order): the same statistics within a few per cent, on 256 samples of each."""
    sensor, stored = scenes(32, SENSOR), scenes(32, 64, seed=1)
    batched = BatchedAugment(RECIPE, 64, 0, CPU)
    pil_camera, pil_stored = CameraPath(RECIPE, 64), augmentation(RECIPE, 64)
    torch.manual_seed(0)
    pairs = {
        "camera": (torch.cat([batched.camera(torch.from_numpy(sensor)) for _ in range(8)]).numpy(),
                   np.stack([pil_camera(Image.fromarray(sensor[i % 32])).numpy() for i in range(256)])),
        "stored": (torch.cat([batched.stored(torch.from_numpy(stored)) for _ in range(8)]).numpy(),
                   np.stack([pil_stored(Image.fromarray(stored[i % 32])).numpy() for i in range(256)])),
    }
    for path, (ours, theirs) in pairs.items():
        a, b = statistics(ours), statistics(theirs)
        assert np.abs(a["mean"] - b["mean"]).max() < 0.04, (path, a, b)     # measured: up to 0.025
        assert np.abs(a["between"] / b["between"] - 1).max() < 0.15, (path, a, b)
        assert np.abs(a["within"] / b["within"] - 1).max() < 0.2, (path, a, b)
        assert 0.002 < a["black"] < 0.05 and 0.002 < b["black"] < 0.05, (path, a, b)  # rotation's corners, both


def test_fine_tuning_on_batched_camera_samples_is_deterministic_and_learns():
    cfg = dict(tiny_params()["finetune"], mode="full", epochs=30, batch_size=32, augmenter="batched",
               augment=RECIPE)
    (stored, y), (sensor, _) = separable_frames(30, seed=0), separable_frames(30, seed=0, size=SENSOR)
    weights = []
    for _ in range(2):
        seed_everything(cfg["seed"])
        model = models.build_classifier(MODEL_CFG)
        result = finetune(model, stored, y, cfg, 64, camera=sensor)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert len(result.curve) == 30 and result.curve[-1]["loss"] < result.curve[0]["loss"]
    test_sensor, test_y = separable_frames(15, seed=1, size=SENSOR)
    said = labels_of(batched_forward(model, camera_pixels(test_sensor, 64), 64, 64))
    metrics = report([CLASSES[t] for t in test_y], said)
    assert metrics["balanced_accuracy"] >= 0.9, metrics   # chance is 0.33

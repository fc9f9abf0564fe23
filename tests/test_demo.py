"""The demo generator draws what its labels say, the same way every time."""
import csv
import hashlib

import numpy as np
import pytest
from scipy import ndimage

from conftest import run_script, tiny_params, write_params
from maskinspect.data import demo
from maskinspect.data.demo import DemoSpec, VideoRenderer
from maskinspect.data.video import extract_frames

SPEC = DemoSpec(seed=11, videos=2, seconds=12, fps=10, size=96, mix={"good": 0.35, "bad": 0.3, "no_mask": 0.35})


def mask_pixels(img: np.ndarray) -> np.ndarray:
    """Mask fabric by colour alone: bluish (the plate and its holes are neutral grey)."""
    f = img.astype(np.float32)
    r, b = f[..., 0], f[..., 2]
    return ndimage.binary_opening(((b - r) / np.maximum(b, 1) > 0.05) & (b > 60))


@pytest.fixture(scope="module")
def rendered():
    return [list(VideoRenderer(SPEC, v).frames()) for v in range(SPEC.videos)]


def test_same_seed_same_pixels_and_labels(rendered):
    again = list(VideoRenderer(SPEC, 0).frames())
    assert len(again) == SPEC.frames_per_video
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(rendered[0], again))
    other = list(VideoRenderer(DemoSpec(**{**SPEC.__dict__, "seed": 12}), 0).frames())
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(rendered[0], other))


def test_coverage_label_matches_the_mask_seen_in_the_pixels(rendered):
    frames = [f for video in rendered for f in video]
    seen = np.array([mask_pixels(img).mean() for img, _ in frames])
    told = np.array([t.coverage for _, t in frames])
    assert np.abs(seen - told).max() < 0.05
    for (img, truth), cov in zip(frames, seen):
        if abs(cov - 0.5) > 0.05:  # away from the boundary, the colour decides the label too
            assert (truth.label == "no_mask") == (cov < 0.5), (truth, cov)
    labels = {t.label for _, t in frames}
    assert labels == {"good", "bad", "no_mask"}


def test_a_bad_label_means_a_defect_is_drawn_in_view():
    size = 96
    seen_bad = 0
    for seed in range(12):
        with_defects = demo.make_sprite(np.random.default_rng(seed), size * 0.78, defective=True)
        without = demo.make_sprite(np.random.default_rng(seed), size * 0.78, defective=False)
        # The same seed draws the same mask; only the defects differ.
        assert np.array_equal(with_defects.body, without.body)
        changed = (np.abs(with_defects.rgb * with_defects.alpha[..., None]
                          - without.rgb * without.alpha[..., None]).sum(-1) > 30)
        marked = ndimage.binary_dilation(with_defects.defect_ids > 0, iterations=3)
        assert changed.sum() > 0 and (changed & ~marked).sum() <= 0.02 * changed.sum()
        for cx in np.linspace(-0.3, 1.3, 9) * size:
            a = demo.place(with_defects, size, cx, size / 2, 5.0, 1.0)
            b = demo.place(without, size, cx, size / 2, 5.0, 1.0)
            truth = demo.truth_for(with_defects, a[2], a[3], 1.0)
            composite = lambda layers: layers[0] + 60.0 * (1 - layers[1][..., None])  # noqa: E731
            diff = (np.abs(composite(a) - composite(b)).sum(-1) > 30).sum()
            if truth.label == "bad":
                seen_bad += 1
                assert diff >= 4, "a frame labelled bad must show its defect"
    assert seen_bad >= 20


def test_class_mix_follows_the_params():
    spec = DemoSpec(seed=3, videos=2, seconds=40, fps=10, size=64, mix={"good": 0.4, "bad": 0.2, "no_mask": 0.4})
    labels = [t.label for v in range(spec.videos) for _, t in VideoRenderer(spec, v).frames()]
    for name, share in spec.mix.items():
        assert abs(labels.count(name) / len(labels) - share) < 0.1, (name, labels.count(name) / len(labels))


def test_render_stage_writes_h264_videos_and_truth_deterministically(tmp_path):
    params = tiny_params()
    write_params(tmp_path / "params.yaml", params)
    digests = []
    for run in ("a", "b"):
        run_script("render_demo.py", "--videos", f"{run}/videos/demo-00.mp4", f"{run}/videos/demo-01.mp4",
                   "--truth", f"{run}/truth.csv", cwd=tmp_path)
        files = sorted((tmp_path / run / "videos").glob("*.mp4")) + [tmp_path / run / "truth.csv"]
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]
    videos = sorted((tmp_path / "a" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["demo-00.mp4", "demo-01.mp4"]
    per_video = int(params["demo"]["seconds"] * params["demo"]["fps"])
    with (tmp_path / "a" / "truth.csv").open() as f:
        truth = list(csv.DictReader(f))
    assert len(truth) == 2 * per_video
    assert truth[0]["frame_id"] == "demo-00-000000" and truth[-1]["frame_id"] == f"demo-01-{per_video - 1:06d}"
    got = extract_frames(videos[0], None, 64, "center")
    assert got.info.codec == "h264" and (got.info.width, got.info.height) == (96, 96)
    assert len(got.frame_numbers) == per_video

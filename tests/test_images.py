"""Labelled image folders as the data source: packing, and the whole tiny pipeline on them."""
import csv
import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import copy_repo, outside_input, pin, init_git, keras_int8, run_script, tiny_params, venv_env, write_params


@pytest.fixture(scope="module")
def folders(demo_data, tmp_path_factory):
    """train/ and test/ in the published layout, made from the tiny demo's frames (at 96 px)."""
    root = tmp_path_factory.mktemp("folders")
    truth = list(csv.DictReader((demo_data / "truth.csv").open()))
    images = np.concatenate([np.load(p) for p in sorted((demo_data / "frames").glob("*.npy"))])
    for i, row in enumerate(truth):
        part = "train" if i % 3 else "test"
        folder = root / part / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).resize((96, 96), Image.BICUBIC).save(folder / f"{row['frame_id']}.jpg", quality=95)
    return root


def pack(train_dir, test_dir, cwd, check=True):
    return run_script("pack_images.py", "--train-dir", train_dir, "--test-dir", test_dir,
                      "--train-frames", "t.npy", "--train-index", "t.csv", "--train-labels", "l.csv",
                      "--test-frames", "test.npy", "--test-index", "test.csv", "--test-labels", "test-labels.csv",
                      "--train-camera", "tc.npy", "--train-camera-index", "tc.csv",
                      "--test-camera", "testc.npy", "--test-camera-index", "testc.csv",
                      cwd=cwd, check=check)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_images_writes_a_shard_and_leaves_test_images_out_of_training(folders, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    # The same image in both folders, under another name: it must not train.
    dup = next((folders / "test" / "no_mask").glob("*.jpg"))
    shutil.copy(dup, folders / "train" / "no_mask" / "copy-000001.jpg")
    try:
        # What must train: every training image whose bytes are in no test image (the copy, and
        # any frame the video happens to repeat across the two folders, are not).
        test_digests = {sha256(p) for p in (folders / "test").rglob("*.jpg")}
        train_images = sorted((folders / "train").rglob("*.jpg"))
        expected = {p.stem for p in train_images if sha256(p) not in test_digests}
        leaked = {p.stem for p in train_images} - expected
        result = pack(folders / "train", folders / "test", tmp_path)
    finally:
        (folders / "train" / "no_mask" / "copy-000001.jpg").unlink()
    assert "copy-000001" in leaked and "copy-000001.jpg is also in" in result.stderr
    assert all(f"{name}.jpg is also in" in result.stderr for name in leaked)
    frames = np.load(tmp_path / "t.npy")
    index = list(csv.DictReader((tmp_path / "t.csv").open()))
    labels = list(csv.DictReader((tmp_path / "l.csv").open()))
    assert {r["frame_id"] for r in index} == expected
    assert frames.shape == (len(expected), 64, 64, 3) and len(index) == len(labels) == len(expected)
    assert index[0]["video"] == "demo-00" and int(index[0]["frame"]) >= 0  # published-style names parsed
    assert {r["label"] for r in labels} <= {"bad", "good", "no_mask"}
    assert all(r["frame_id"] == i["frame_id"] for r, i in zip(labels, index))
    # The camera shard holds the same images, in the same order, as the sensor window sees them.
    camera = np.load(tmp_path / "tc.npy")
    assert camera.shape == (len(expected), 240, 240, 3) and camera.dtype == np.uint8
    assert [r["frame_id"] for r in csv.DictReader((tmp_path / "tc.csv").open())] == [r["frame_id"] for r in index]


def test_pack_images_names_an_unknown_class_folder(folders, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    odd = tmp_path / "odd"
    shutil.copytree(folders / "test", odd)
    (odd / "good").rename(odd / "fine")
    result = pack(odd, folders / "test", tmp_path, check=False)
    assert result.returncode == 1 and "unknown class folder 'fine'" in result.stderr
    assert not (tmp_path / "t.npy").exists() and not (tmp_path / "test.npy").exists()


@pytest.mark.slow  # a whole build with crossval and the comparison: about 100 s
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_images_source_builds_the_bundle_with_crossval_and_comparison(folders, tmp_path):
    work = copy_repo(tmp_path / "repo")
    params = tiny_params()
    params["data"].update(source="images", images_dir=str(folders / "train"), test_dir=str(folders / "test"))
    write_params(work / "params.yaml", params)
    init_git(work)
    result = subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr  # the bundle first; the cross-validation follows it
    assert log.index("(Rule: bundle)") < log.index("localrule crossval:"), log[-4000:]
    for packed in ("data/frames/images-train.npy", "data/frames/images-test.csv", "data/labels/images-train.csv"):
        assert (work / packed).is_file(), packed
    assert not (work / "data/embeddings").exists()  # no selection stages with labelled folders
    cv = json.loads((work / "metrics/crossval.json").read_text())
    assert cv["folds"] == 2 and cv["repeats"] == 2 and 0 <= cv["balanced_accuracy_mean"] <= 1
    assert [(f["repeat"], f["fold"]) for f in cv["per_fold"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # each repeat validates every training frame once
    train_count = len((work / "data/labels/images-train.csv").read_text().splitlines()) - 1
    assert sum(f["count"] for f in cv["per_fold"]) == 2 * train_count
    assert sum(map(sum, cv["pooled"]["confusion"]["matrix"])) == 2 * train_count
    assert (work / "dist/openmv/model.tflite").is_file()
    comparison = json.loads((work / "metrics/published_comparison.json").read_text())
    assert set(comparison["models"]) == {"published", "ours"}
    assert comparison["models"]["published"]["model_bytes"] == 91_360
    assert "refuse" in str(comparison["models"]["published"]["arena_bytes"])
    assert isinstance(comparison["models"]["ours"]["arena_bytes"], int)
    assert "| published |" in (work / "metrics/published_comparison.md").read_text()


def compare(ours, cwd, check=True):
    return run_script("compare_published.py", "--frames", "test.npy", "--camera", "testc.npy",
                      "--test-labels", "test-labels.csv", "--ours", ours,
                      "--published", pin("published-model"),
                      "--tflm-metrics", "tflm.json", "--metrics", "cmp.json", "--table", "cmp.md",
                      cwd=cwd, check=check)


def test_compare_published_scores_a_48_px_model_beside_the_64_px_published_one(folders, tmp_path):
    """A network of another input size (model.input_size with frames.size) is compared with the
    64 px published model through the camera path, each fed the sensor window at its own size; the
    published model's stored-frame figure is left out with the reason, not computed on 48 px frames."""
    from maskinspect.device import runtime
    from maskinspect.device.camera import camera_pixels
    from maskinspect.model.evaluation import labels_of, report
    from maskinspect.data.labels import read_labelled

    write_params(tmp_path / "params.yaml", tiny_params(**{"frames.size": 48, "model.input_size": 48}))
    pack(folders / "train", folders / "test", tmp_path)
    assert np.load(tmp_path / "test.npy").shape[1:] == (48, 48, 3)
    ours = keras_int8(tmp_path / "ours.tflite", dense_per_channel=False, size=48)
    (tmp_path / "tflm.json").write_text(json.dumps({"arena_bytes": runtime.smallest_arena(ours.read_bytes())}))
    result = compare(ours, tmp_path)
    m = json.loads((tmp_path / "cmp.json").read_text())["models"]
    assert m["published"]["balanced_accuracy"] is None and m["published"]["recall"] is None
    assert "48 px" in m["published"]["stored_note"] and "64 px" in m["published"]["stored_note"]
    assert "stored_note" not in m["ours"] and 0 <= m["ours"]["balanced_accuracy"] <= 1
    # the published model's camera figure is its own on the sensor window scaled to 64 px
    ids, labels = read_labelled(tmp_path / "test-labels.csv")
    sensor = np.load(tmp_path / "testc.npy")
    expected = report(labels, labels_of(runtime.run_litert(
        outside_input("published-model"), camera_pixels(sensor, 64)).scores))
    assert m["published"]["camera"]["balanced_accuracy"] == expected["balanced_accuracy"]
    assert m["published"]["camera"]["confusion"] == expected["confusion"]
    assert m["ours"]["input"] == "int8 [1, 48, 48, 3]" and m["published"]["input"] == "uint8 [1, 64, 64, 3]"
    table = (tmp_path / "cmp.md").read_text()
    assert "| published | uint8 [1, 64, 64, 3] | LiteRT | stored | — |" in table
    assert "| published | uint8 [1, 64, 64, 3] | LiteRT | camera path | " in table and "48 px" in table
    assert "not scored on the stored frames" in result.stderr


def test_compare_published_refuses_our_model_when_it_does_not_take_the_stored_frames(folders, tmp_path):
    from maskinspect.device import runtime

    write_params(tmp_path / "params.yaml", tiny_params(**{"frames.size": 48, "model.input_size": 48}))
    pack(folders / "train", folders / "test", tmp_path)
    ours = keras_int8(tmp_path / "ours32.tflite", dense_per_channel=False, size=32)
    (tmp_path / "tflm.json").write_text(json.dumps({"arena_bytes": runtime.smallest_arena(ours.read_bytes())}))
    result = compare(ours, tmp_path, check=False)
    assert result.returncode == 1
    assert "ours32.tflite: takes 32 px frames; the test frames are 48 px" in result.stderr
    assert not (tmp_path / "cmp.json").exists() and not (tmp_path / "cmp.md").exists()

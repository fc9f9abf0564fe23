"""The annotate stage: labels in, labels out, and the hand-off to a person when they are missing."""
import csv

import pytest

from conftest import run_script, tiny_params, write_params


@pytest.fixture()
def work(demo_data, tmp_path):
    write_params(tmp_path / "params.yaml", tiny_params())
    truth = list(csv.DictReader((demo_data / "truth.csv").open()))
    ids = [r["frame_id"] for r in truth]
    (tmp_path / "selected.csv").write_text("frame_id,rank\n" + "".join(f"{i},{k}\n" for k, i in enumerate(ids[:6])))
    (tmp_path / "test.csv").write_text("frame_id\n" + "".join(f"{i}\n" for i in ids[70:74]))
    return tmp_path, truth


def run_annotate(tmp_path, demo_data, labels):
    shards = sorted((demo_data / "frames").glob("*.npy"))
    return run_script("annotate.py", "--selected", "selected.csv", "--test-sample", "test.csv", "--frames", *shards,
                      "--videos", *sorted((demo_data / "videos").glob("*.mp4")), "--labels", labels, "--train-labels", "labels/train.csv", "--test-labels", "labels/test.csv",
                      cwd=tmp_path, check=False)


def write_labels(path, rows):
    path.write_text("frame_id,label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_ground_truth_csv_labels_both_sets(work, demo_data):
    tmp_path, truth = work
    result = run_annotate(tmp_path, demo_data, demo_data / "truth.csv")
    assert result.returncode == 0, result.stderr
    by_id = {r["frame_id"]: r["label"] for r in truth}
    train = list(csv.DictReader((tmp_path / "labels" / "train.csv").open()))
    assert [r["frame_id"] for r in train] == [r["frame_id"] for r in truth[:6]]
    assert all(r["label"] == by_id[r["frame_id"]] for r in train)
    assert len(list(csv.DictReader((tmp_path / "labels" / "test.csv").open()))) == 4


@pytest.mark.parametrize("bad_row,message", [
    (("demo-00-000003", "torn"), "line 5: unknown label 'torn' for demo-00-000003"),
    (("demo-00-000001", "good"), "line 5: demo-00-000001 is labelled twice (first at"),
    (("demo-07-000001", "good"), "line 5: frame demo-07-000001 does not exist (no video 'demo-07'"),
    (("demo-01-009999", "good"), "line 5: frame demo-01-009999 does not exist (video demo-01 has frames 0 to"),
])
def test_bad_label_rows_are_named(work, demo_data, bad_row, message):
    tmp_path, truth = work
    rows = [(r["frame_id"], r["label"]) for r in truth[:3]] + [bad_row]
    labels = write_labels(tmp_path / "labels.csv", rows)
    result = run_annotate(tmp_path, demo_data, labels)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "labels" / "train.csv").exists()


def test_missing_labels_are_exported_for_a_person(work, demo_data):
    tmp_path, truth = work
    labels = write_labels(tmp_path / "labels.csv", [(r["frame_id"], r["label"]) for r in truth[:4]])
    result = run_annotate(tmp_path, demo_data, labels)
    assert result.returncode == 3  # a normal stop for a person, not an error
    assert result.stderr.startswith("Labels needed: 6 of the 10 frames chosen for labelling have none yet "
                                    "(2 to train on, 4 for the test sample).\n") and "error" not in result.stderr
    exported = sorted(p.stem for p in (tmp_path / "labels" / "to_label" / "images").glob("*.png"))
    assert exported == sorted([r["frame_id"] for r in truth[4:6]] + [r["frame_id"] for r in truth[70:74]])
    todo = list(csv.DictReader((tmp_path / "labels" / "to_label.csv").open()))
    assert {r["frame_id"] for r in todo} == set(exported) and all(r["label"] == "" for r in todo)
    assert not (tmp_path / "labels" / "train.csv").exists()

    # The person fills in to_label.csv; its rows join the labels file, and the stage passes.
    by_id = {r["frame_id"]: r["label"] for r in truth}
    with labels.open("a") as f:
        f.writelines(f"{r['frame_id']},{by_id[r['frame_id']]}\n" for r in todo)
    assert run_annotate(tmp_path, demo_data, labels).returncode == 0


def test_labelled_folders_are_a_labels_source(work, demo_data):
    tmp_path, truth = work
    folders = tmp_path / "sorted"
    for r in truth[:6] + truth[70:74]:
        (folders / r["label"]).mkdir(parents=True, exist_ok=True)
        (folders / r["label"] / f"{r['frame_id']}.png").write_bytes(b"")
    result = run_annotate(tmp_path, demo_data, folders)
    assert result.returncode == 0, result.stderr
    (folders / "scratched").mkdir()
    (folders / "scratched" / "demo-00-000059.png").write_bytes(b"")
    result = run_annotate(tmp_path, demo_data, folders)
    assert result.returncode == 1 and "unknown label 'scratched'" in result.stderr

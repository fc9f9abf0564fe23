"""A user's own line, end to end: the published camera's training frames as videos with a labels
CSV, built with the defaults (the real recipe) into a bundle, and that bundle scored on dev/
through the camera's input path. Marked `real` (about 12 minutes of real fine-tuning on 2 cores, run
with `scripts/venv.sh pytest -m real`; CI leaves it out to stay inside its time); needs the published
frames (pins/published-frames-*.yaml: the mirror ../shared or the network)."""
import csv
import json
import re
import subprocess
from collections import defaultdict

import numpy as np
import pytest

from conftest import ROOT, copy_repo, init_git, outside_input, repo_params, venv_env, write_params

pytestmark = [pytest.mark.real]


def write_videos(root, labels_path):
    """One 5 fps H.264 video per source video (A-D), its frames in frame-number order; the labels
    CSV names each frame as the pipeline will (video name, position in the video)."""
    from maskinspect.data.images import load_sensor_image
    from maskinspect.data.video import encode_h264

    by_video = defaultdict(list)
    for path in sorted(outside_input("published-frames-train").glob("*/*.jpg")):
        video, number = re.fullmatch(r"([A-Z])-(\d+)", path.stem).groups()
        by_video[video].append((int(number), path))
    rows = []
    (root / "data" / "videos").mkdir(parents=True)
    for video, items in sorted(by_video.items()):
        items.sort()
        encode_h264(root / "data" / "videos" / f"{video}.mp4",
                    (load_sensor_image(path, 256) for _, path in items), (256, 256), fps=5, crf=18)
        rows += [(f"{video}-{i:06d}", path.parent.name) for i, (_, path) in enumerate(items)]
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    with labels_path.open("w", newline="") as f:
        csv.writer(f).writerows([("frame_id", "label"), *rows])
    return len(rows)


def test_own_videos_build_a_bundle_that_holds_up_through_the_camera_path(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT))
    from maskinspect import CLASSES
    from maskinspect.device import runtime
    from maskinspect.device.camera import SENSOR, camera_input
    from maskinspect.model.evaluation import labels_of, report
    from maskinspect.data.images import load_sensor_image

    work = copy_repo(tmp_path / "repo")
    count = write_videos(work, work / "data" / "labels" / "labels.csv")
    params = repo_params()
    params["data"]["source"] = "videos"   # everything else: the defaults, i.e. the real recipe
    params["frames"]["fps"] = None
    params["select"].update(n=130, share=1.0, test_n=50, test_share=1.0, block_seconds=2)  # this user labels most
    params["crossval"].update(folds=3, repeats=1)                # CI time: the figure is not asserted here
    write_params(work / "params.yaml", params)
    init_git(work)
    result = subprocess.run(["snakemake", "--cores", "2"], cwd=work, capture_output=True, text=True, env=venv_env())
    assert result.returncode == 0, result.stderr[-4000:]
    finetune = json.loads((work / "metrics" / "finetune.json").read_text())
    assert "camera" in finetune  # the figures through the camera's input path, beside the host's
    labelled = sum(1 for _ in open(work / "data/labels/videos-train.csv")) - 1
    assert 100 <= labelled <= 130 and count == 200

    # The bundle on dev/, fed the way the camera feeds it: sensor window, firmware resize, RGB565.
    paths = sorted(outside_input("published-frames-dev").glob("*/*.jpg"))
    truth = [p.parent.name for p in paths]
    sensor = np.stack([load_sensor_image(p, SENSOR) for p in paths])
    model = runtime.read_model(work / "dist" / "openmv" / "model.tflite")
    logits = runtime.run_tflm(model, camera_input(sensor, 64), runtime.smallest_arena(model))
    figures = report(truth, labels_of(logits, CLASSES))
    print(f"own videos -> bundle, dev/ through the camera path: {figures['balanced_accuracy']:.3f} "
          f"balanced accuracy, bad recall {figures['recall']['bad']:.3f}")
    # Measured with the recipe of fee9278 (bad weighing 2.5 times in the loss): 0.952, bad recall
    # 0.857; twice 0.976 (0.929), three times and once 0.929 (0.786), 0.905 before training through
    # the camera path. The build is bit-identical across machines, so this is one fixed figure; the
    # bound is the aim for this path (README, "Your own videos"); the 2020 model gets 0.793.
    assert figures["balanced_accuracy"] >= 0.93

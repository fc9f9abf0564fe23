"""The `maskinspect` command: `check` on our model and on the published 2020 one."""
import shutil
import subprocess

import pytest

from conftest import ENDPOINTAI, ROOT, tiny_params, venv_env

MASKINSPECT = str(ROOT / ".venv" / "bin" / "maskinspect")
TOOLCHAIN = shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")


def check(model, cwd, *extra):
    return subprocess.run([MASKINSPECT, "check", str(model), *extra], cwd=cwd, capture_output=True, text=True,
                          env=venv_env(), timeout=600)


@pytest.mark.skipif(not TOOLCHAIN, reason="needs the ARM toolchain and QEMU (.ci/run installs them)")
def test_check_passes_our_model_on_every_claimed_firmware(tiny_build):
    result = check(tiny_build / "dist/openmv/model.tflite", tiny_build)
    assert result.returncode == 0, result.stderr
    assert "fit for the camera" in result.stdout and result.stderr == ""
    for firmware in ("4.5.6", "4.6.20, 4.7.0, 4.8.1"):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"firmware {firmware} "))
        assert "runs; arena" in line and "M instructions" in line and "ms at 480 MHz" in line


@pytest.mark.skipif(not (ENDPOINTAI / "reference").is_dir(), reason="needs ../shared")
def test_check_refuses_the_published_uint8_model_one_line_each(tiny_build):
    result = check(ENDPOINTAI / "reference" / "lightly_resnet9.tflite", tiny_build, "--no-firmware")
    assert result.returncode == 1
    assert "MOps (2 x MACs)  33.358" in result.stdout and "model bytes      91360" in result.stdout
    refusals = result.stderr.strip().splitlines()
    assert all(line.startswith("maskinspect check: refused: ") for line in refusals)
    assert any("on the data path is UINT8, not INT8" in line for line in refusals)


def test_check_names_a_missing_file(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = check(tmp_path / "nothing.tflite", tmp_path, "--no-firmware")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"maskinspect check: error: {tmp_path / 'nothing.tflite'}: no such file"]


def test_status_names_the_stale_stages_in_both_views_and_changes_nothing(built_copy):
    import yaml

    from conftest import files_state, write_params

    def status():
        result = subprocess.run([MASKINSPECT, "status"], cwd=built_copy, capture_output=True, text=True,
                                env=venv_env(), timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "up to date: Snakemake would run nothing and DVC reports no change" in status()
    params = yaml.safe_load((built_copy / "params.yaml").read_text())
    params["bundle"]["board"] = "OpenMV H7 Plus"
    write_params(built_copy / "params.yaml", params)
    before = files_state(built_copy, skip=(".snakemake/", ".dvc/tmp/"))
    lines = [x for x in status().splitlines() if not x.startswith("note: ")]
    assert lines[0] == "bundle" and len(lines) == 6  # the stage that reads bundle.*, and the report after it
    assert lines[1] == "  snakemake: Updated input files: .snakemake/stage-settings/bundle.json"
    assert lines[2] == "  dvc:       changed deps: params.yaml (bundle modified)"
    assert lines[3] == "report" and lines[4].startswith("  snakemake: Input files updated by another job: ")
    # `dvc status` names a stage's own inputs only; status adds what follows from DVC's graph
    assert lines[5] == "  dvc:       reruns after bundle (it reads what they write)"
    assert files_state(built_copy, skip=(".snakemake/", ".dvc/tmp/")) == before


def test_emulate_runs_the_bundles_main_py_on_a_video_and_agrees_with_the_camera_path_metrics(tiny_build, tmp_path):
    """`maskinspect emulate` on the zipped bundle and a demo video: one answer per frame, the LED
    of each class, a CSV and an MP4 of them; the classes are the int8 model's on the camera path
    the metrics use (camera_frames' window, RGB565, the firmware's resize, pixel - 128)."""
    import csv

    import imageio_ffmpeg
    import numpy as np

    from maskinspect import runtime
    from maskinspect.camera import camera_input
    from maskinspect.camera import SENSOR
    from maskinspect.video import extract_frames

    video = sorted((tiny_build / "data/demo/videos").glob("*.mp4"))[0]
    out_csv, out_mp4 = tmp_path / "answers.csv", tmp_path / "answers.mp4"
    result = subprocess.run([MASKINSPECT, "emulate", str(tiny_build / "dist/openmv.zip"), str(video),
                             "--max-frames", "12", "--csv", str(out_csv), "--mp4", str(out_mp4)],
                            cwd=tmp_path, capture_output=True, text=True, env=venv_env(), timeout=600)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert {r["led"] for r in rows} <= {"red", "green", "blue"}
    assert all({"bad": "red", "good": "green", "no_mask": "blue"}[r["label"]] == r["led"] for r in rows)

    frames = extract_frames(video, None, SENSOR, "center").frames[:12]
    model = (tiny_build / "dist/openmv/model.tflite").read_bytes()
    size = tiny_params()["model"]["input_size"]
    logits = runtime.run_tflm(model, camera_input(frames, size), runtime.smallest_arena(model))
    classes = (tiny_build / "dist/openmv/model.txt").read_text().split()
    assert [r["label"] for r in rows] == [classes[i] for i in np.argmax(logits, axis=1)]

    reader = imageio_ffmpeg.read_frames(str(out_mp4))
    meta = next(reader)
    assert tuple(meta["size"]) == (SENSOR, SENSOR) and sum(1 for _ in reader) == 12


def test_emulate_says_in_one_line_what_is_not_a_bundle(tmp_path):
    (tmp_path / "main.py").write_text("print('hello')\n")
    result = subprocess.run([MASKINSPECT, "emulate", str(tmp_path), str(tmp_path / "none.mp4")], cwd=tmp_path,
                            capture_output=True, text=True, env=venv_env(), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (f"maskinspect emulate: error: {tmp_path}: not a bundle: "
                                                      f"model.tflite, model.txt missing")

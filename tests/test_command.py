"""The `maskinspect` command: `check` on our model and on the published 2020 one."""
import shutil
import subprocess

import pytest

from conftest import ENDPOINTAI, ROOT, venv_env

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
    assert lines[0] == "bundle" and len(lines) == 3  # only the stage that reads bundle.*
    assert lines[1] == "  snakemake: Updated input files: .snakemake/stage-settings/bundle.json"
    assert lines[2] == "  dvc:       changed deps: params.yaml (bundle modified)"
    assert files_state(built_copy, skip=(".snakemake/", ".dvc/tmp/")) == before

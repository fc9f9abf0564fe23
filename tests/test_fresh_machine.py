"""The README's two commands set up a fresh machine: in a clean Debian 12 root (debootstrap, run
with buildah as the image test does) that holds only what the quick start asks for (Python 3.11
with venv, git), run as root, `scripts/venv.sh snakemake --cores all` installs the system
packages and the environment and builds, and `scripts/venv.sh pytest` passes.

Slow: a fresh environment is about 9 GB from PyPI and the system packages come from Debian's
mirror. To stay inside CI's time it builds the tests' tiny project and runs the tests that need
the system packages (the environment, OpenMV's libraries on the emulated Cortex-M7, Chromium);
MASKINSPECT_FRESH_FULL=1 runs the repository as it is, the demo build and the whole fast suite."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, copy_repo, init_git, tiny_params, venv_env, write_params

BASE = "localhost/maskinspect-base:bookworm"
PREREQUISITES = "python3 python3-venv git ca-certificates"   # the quick start's: Python 3.11 with venv, git
SUBSET = "tests/test_environment.py tests/test_firmware.py tests/test_labelling.py"

pytestmark = [pytest.mark.slow, pytest.mark.nightly,  # heavy: not every .ci/run (docs/ci.md)
             
              pytest.mark.skipif(shutil.which("buildah") is None or os.geteuid() != 0,
                                 reason="needs buildah and root (.ci/run installs buildah)")]


def buildah(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)


def project(tmp_path: Path, full: bool) -> Path:
    """What the user clones: the repository, or its tiny configuration, committed."""
    if full:
        work = tmp_path / "project"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        return work
    work = copy_repo(tmp_path / "project")
    write_params(work / "params.yaml", tiny_params())
    subprocess.run(["python", "scripts/sync_dvc.py"], cwd=work, check=True, capture_output=True, env=venv_env())
    return init_git(work)


def test_the_readmes_two_commands_set_up_a_clean_debian_root(tmp_path):
    full = bool(os.environ.get("MASKINSPECT_FRESH_FULL"))
    if buildah("inspect", "--type", "image", BASE).returncode != 0:
        made = subprocess.run([str(ROOT / "scripts" / "build_image.sh"), "--base-only"], capture_output=True,
                              text=True, timeout=1800)
        assert made.returncode == 0, made.stderr[-3000:]
    work = project(tmp_path, full)
    ctr = buildah("from", "--quiet", "--pull=never", BASE).stdout.strip()
    assert ctr, "buildah from failed"
    mounts = ["-v", f"{work}:/project"]
    env = ["--env", "PIP_NO_CACHE_DIR=1", "--env", "HOME=/root"]
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        # this machine reaches the registries through a proxy whose certificate authority its own
        # store holds: the fresh root trusts the same (as scripts/build_image.sh does for the image)
        mounts += ["-v", "/etc/ssl/certs:/run/host-certs:ro"]
        env += ["--env", "PIP_CERT=/run/host-certs/ca-certificates.crt"]
    if SHARED.is_dir():  # the offline mirror of the pinned outside inputs, as .ci/run has it
        mounts += ["-v", f"{SHARED}:/shared:ro"]
        env += ["--env", "MASKINSPECT_MIRROR=/shared"]

    def run(script: str, timeout: int = 3600) -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        result = buildah("run", "--isolation", "chroot", "--network", "host", *mounts, *env, ctr, "--",
                         "bash", "-c", script, timeout=timeout)
        return result, time.monotonic() - start

    try:
        ready, _ = run(f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PREREQUISITES}"
                       " >/dev/null && python3 --version && git config --global --add safe.directory '*'")
        assert ready.returncode == 0 and "Python 3.11" in ready.stdout, ready.stderr[-3000:]
        absent, _ = run("command -v arm-none-eabi-gcc qemu-system-arm chromium || echo none")
        assert absent.stdout.strip() == "none"  # the system packages are the commands' to install

        build, build_s = run("cd /project && scripts/venv.sh snakemake --cores all --quiet rules")
        assert build.returncode == 0, (build.stdout + build.stderr)[-6000:]
        assert "scripts/venv.sh: installing the system packages" in build.stderr
        assert (work / "dist/openmv.zip").is_file() and (work / "metrics/firmware.json").is_file()

        suite, suite_s = run(f"cd /project && scripts/venv.sh pytest -q -p no:cacheprovider"
                             f"{'' if full else ' ' + SUBSET}")
        assert suite.returncode == 0, (suite.stdout + suite.stderr)[-6000:]
        assert " passed" in suite.stdout and " skipped" not in suite.stdout.splitlines()[-1], suite.stdout[-2000:]
        print(f"fresh Debian root: build {build_s:.0f} s (system packages and .venv included), "
              f"tests {suite_s:.0f} s: {suite.stdout.strip().splitlines()[-1]}")
    finally:
        buildah("rm", ctr)

"""Shared fixtures: tiny configurations and tiny generated data, built once per session."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision  # noqa: F401 - before any test imports TensorFlow: the other order segfaults (triton)
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ENDPOINTAI = SHARED / "data" / "endpointai"


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params(**overrides) -> dict:
    """The repository's params, shrunk so that every stage runs in seconds."""
    p = copy.deepcopy(repo_params())
    p["demo"].update(videos=2, seconds=6, fps=10, size=96)
    p["frames"].update(fps=None, size=64)
    p["pretrain"].update(epochs=1, batch_size=32)
    p["select"].update(n=40, test_n=30, test_fraction=0.3, block_seconds=1)
    p["finetune"].update(epochs=3, batch_size=20)
    p["export"].update(parity_frames=8)
    p["quantize"].update(calibration_frames=16)
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        target = p
        for part in section.split("."):
            target = target[part]
        target[key] = value
    return p


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def venv_env(**extra) -> dict:
    """The environment of a subprocess: `python` and `snakemake` are this interpreter's."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **extra}


def run_script(script: str, *args, cwd: Path, check: bool = True, env: dict | None = None,
               prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run scripts/<script> with this interpreter in `cwd`."""
    cmd = [*prefix, sys.executable, str(ROOT / "scripts" / script), *map(str, args)]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=venv_env(**(env or {})))
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def init_git(work: Path, message: str = "tiny test project") -> Path:
    """Make `work` a git repository with everything committed (DVC needs git)."""
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "test@example.invalid")
    git(work, "config", "user.name", "test")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    return work


def copy_repo(dest: Path) -> Path:
    """The files a clean clone holds (the working tree's tracked and new files), no history."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if not src.is_file() or rel.startswith(("data/", "models/", "dist/", "metrics/")) or rel == "dvc.lock":
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """Two tiny rendered demo videos, their truth, and their frame shards."""
    work = tmp_path_factory.mktemp("demo")
    write_params(work / "params.yaml", tiny_params())
    run_script("render_demo.py", "--videos-dir", "videos", "--truth", "truth.csv", cwd=work)
    for video in sorted((work / "videos").glob("*.mp4")):
        run_script("extract_frames.py", video, "--frames", f"frames/{video.stem}.npy",
                   "--index", f"frames/{video.stem}.csv", cwd=work)
    return work


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """A copy of the repository with tiny params (a git repository, as a clone is), built end
    to end by Snakemake. Tests may add commits and tags but leave the built files as they are."""
    work = copy_repo(tmp_path_factory.mktemp("build") / "repo")
    write_params(work / "params.yaml", tiny_params())
    subprocess.run([sys.executable, "scripts/sync_dvc.py"], cwd=work, check=True, capture_output=True, env=venv_env())
    init_git(work)
    result = subprocess.run(["snakemake", "--cores", "2", "--quiet", "rules"], cwd=work, capture_output=True,
                            text=True, env=venv_env())
    if result.returncode != 0:
        raise AssertionError(f"tiny Snakemake build failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return work

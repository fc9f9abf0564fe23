"""Shared fixtures: tiny configurations and tiny generated data, built once per session."""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision  # noqa: F401 - before any test imports TensorFlow: the other order segfaults (triton)
import yaml

ROOT = Path(__file__).resolve().parent.parent
# ../shared, beside the repository here and in CI, is this project's offline mirror of the outside
# inputs (pins/*.yaml); without it they are fetched from their public sources, or the tests that
# need them skip.
SHARED = ROOT.parent / "shared"
if SHARED.is_dir():
    os.environ.setdefault("MASKINSPECT_MIRROR", str(SHARED))
# The published network's model section, written out rather than read from params.yaml: the tests
# that use it assert the published network's figures, whatever the defaults become.
MODEL_CFG = {"width": 0.125, "features": 16, "input_size": 64, "stem_stride": 1, "block1_stride": 1}


def separable_frames(n_per_class: int, seed: int, size: int = 64):
    """Three classes a person tells apart at a glance: a bright square, a dark bar, nothing; at
    `size` px (drawn at 64 px and scaled bilinearly)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, targets = [], []
    for cls in range(3):
        for _ in range(n_per_class):
            img = rng.normal(120, 20, size=(64, 64, 3))
            x, y = rng.integers(8, 40, 2)
            if cls == 0:
                img[y:y + 16, x:x + 16] = 250
            elif cls == 1:
                img[:, x:x + 6] = 10
            img = np.clip(img, 0, 255).astype(np.uint8)
            images.append(img if size == 64 else np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)))
            targets.append(cls)
    return np.stack(images), np.array(targets)


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params(**overrides) -> dict:
    """The repository's params, shrunk so that every stage runs in seconds: the demo (its recipe
    included) and the real-data recipe alike. Overrides are dotted keys as written in params.yaml
    (with the demo, `demo_recipe.finetune.epochs` is what finetune runs with)."""
    p = copy.deepcopy(repo_params())
    p["demo"].update(videos=2, seconds=6, fps=10, size=96)
    p["frames"].update(fps=None, size=64)
    p["pretrain"].update(batch_size=32)
    p["select"].update(n=40, test_n=30, test_fraction=0.3, block_seconds=1)
    p["finetune"].update(epochs=3, batch_size=16)
    p["demo_recipe"]["pretrain"].update(epochs=1)
    p["demo_recipe"]["finetune"].update(epochs=3, batch_size=20)
    p["export"].update(parity_frames=8)
    p["quantize"].update(calibration_frames=16)
    p["crossval"].update(folds=2, repeats=2)
    p["firmware"].update(frames=4)
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        target = p
        for part in section.split("."):
            target = target[part]
        target[key] = value
    return p


def pin(name: str) -> Path:
    """The pin of an outside input (pins/<name>.yaml): what a stage is given for it."""
    return ROOT / "pins" / f"{name}.yaml"


def outside_input(name: str) -> Path:
    """An outside input's local files, checked against its pin (from the download cache, the mirror
    ../shared or its public source); the test is skipped where none can be reached."""
    from maskinspect.workflow import pinned

    found = pinned.available(name, ROOT)
    if found is None:
        pytest.skip(f"outside input {name}: not in the cache, no mirror ({pinned.MIRROR_ENV}) and no network")
    return found


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


def keras_int8(path: Path, dense_per_channel: bool, size: int = 64) -> Path:
    """A small int8 classifier taking `size` px frames (pixel - 128, as the firmware feeds it), its
    dense head quantised per channel (what OpenMV's 2024 libraries refuse) or per tensor."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((size, size, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3)(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    rng = np.random.default_rng(0)

    def data():
        for _ in range(8):
            yield [rng.random((1, size, size, 3)).astype(np.float32)]
        yield [np.zeros((1, size, size, 3), np.float32)]
        yield [np.ones((1, size, size, 3), np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = not dense_per_channel
    path.write_bytes(converter.convert())
    return path


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
    names = [f"demo-{i:02d}" for i in range(tiny_params()["demo"]["videos"])]
    run_script("render_demo.py", "--videos", *(f"videos/{n}.mp4" for n in names), "--truth", "truth.csv", cwd=work)
    for name in names:
        run_script("extract_frames.py", "--video", f"videos/{name}.mp4", "--frames", f"frames/{name}.npy",
                   "--index", f"frames/{name}.csv", "--name", name, cwd=work)
    return work


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """A copy of the repository with tiny params, committed and not built: what a clean clone
    starts from. Tests clone it; none changes it."""
    work = copy_repo(tmp_path_factory.mktemp("source") / "repo")
    write_params(work / "params.yaml", tiny_params())
    subprocess.run([sys.executable, "scripts/sync_dvc.py"], cwd=work, check=True, capture_output=True, env=venv_env())
    return init_git(work)


@pytest.fixture(scope="session")
def tiny_build(tiny_source, tmp_path_factory) -> Path:
    """A clone of tiny_source built end to end by Snakemake. Tests may add commits and tags but
    leave the built files as they are (a test that changes files works on a copy)."""
    work = tmp_path_factory.mktemp("build") / "repo"
    git(work.parent, "clone", "-q", str(tiny_source), str(work))
    git(work, "config", "user.email", "test@example.invalid")
    git(work, "config", "user.name", "test")
    result = subprocess.run(["snakemake", "--cores", "2", "--quiet", "rules"], cwd=work, capture_output=True,
                            text=True, env=venv_env())
    if result.returncode != 0:
        raise AssertionError(f"tiny Snakemake build failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return work


@pytest.fixture()
def built_copy(tiny_build, tmp_path) -> Path:
    """A copy of the tiny build (files, times, git and DVC state) that one test may change."""
    copy = tmp_path / "built"
    shutil.copytree(tiny_build, copy, symlinks=True)
    return copy


def outputs_state(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every output dvc.lock records, and of dvc.lock itself."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    paths = sorted({o["path"] for st in lock.values() for o in st.get("outs", [])} | {"dvc.lock"})
    return {p: (hashlib.sha256((root / p).read_bytes()).hexdigest(), (root / p).stat().st_mtime_ns) for p in paths}


def files_state(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root, but for those under the `skip` folders."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not p.is_symlink() and not rel.startswith(skip):
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out

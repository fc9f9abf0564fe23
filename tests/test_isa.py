"""The same bytes on any x86-64 CPU: the stages whose numbers come from runtimes that choose their
kernels by the CPU's vector ISA (ONNX Runtime, LiteRT, TensorFlow, numpy and OpenBLAS, PyTorch)
give the same outputs on this machine and on an emulated AVX2-only CPU (`qemu-x86_64 -cpu
Haswell`: AVX2 and FMA, no AVX-512), byte for byte. On a machine with AVX-512 this compares the two
kernel families; on one without, it still checks that emulation changes nothing.

Slow (several minutes of emulated CPU); needs Debian's qemu-user (.ci/run installs it)."""
from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import MODEL_CFG, ROOT, outside_input, venv_env

QEMU = shutil.which("qemu-x86_64")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 not installed (Debian's qemu-user; .ci/run installs it)")]

# The stages, and the runtime in them whose kernels depend on the ISA.
STAGES = {
    "finetune": "PyTorch (oneDNN, ATen)",
    "select_frames": "numpy and OpenBLAS (the PCA of the embedding map)",
    "export_onnx": "ONNX Runtime (the parity check)",
    "quantize": "onnxsim's ONNX Runtime, TensorFlow's calibration, LiteRT and TFLite Micro",
    "tflm_check": "LiteRT and TFLite Micro",
}


def stage_command(build: Path, name: str, out: Path, inputs: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """The stage's command from the build's dvc.yaml with every output redirected into `out` (and
    the inputs named in `inputs` replaced); returns (command, outputs as written in dvc.yaml)."""
    stage = yaml.safe_load((build / "dvc.yaml").read_text())["stages"][name]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    words = shlex.split(stage["cmd"])
    for i, word in enumerate(words):
        if word in outs or (i and words[i - 1] == "--log"):
            words[i] = str(out / word.replace("/", "__"))
        elif word in (inputs or {}):
            words[i] = inputs[word]
    assert words[:2] == ["python", f"scripts/{name}.py"]
    return [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *words[2:]], outs


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published_classifier(folder: Path) -> Path:
    """The published classifier's weights in our format: a network trained for real, whose logits
    onnxruntime's AVX-512 and AVX2 kernels round differently (the tiny build's barely trained head
    gives the same last bits on both, and would not show it)."""
    import torch

    from maskinspect.model import models

    model = models.build_classifier(MODEL_CFG)
    state = torch.load(outside_input("published-classifier"), map_location="cpu", weights_only=True)
    models.load_into(model, state, "finetuned.pt")
    path = folder / "published-classifier.safetensors"
    models.save_weights(path, model, {"stage": "test"})
    return path


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.nightly) if n == "quantize" else n for n in STAGES])
def test_a_stage_gives_the_same_bytes_on_an_avx2_only_cpu(tiny_build, tmp_path, name):
    inputs = {}
    if name == "export_onnx":
        inputs["models/classifier.safetensors"] = str(published_classifier(tmp_path))
    got = {}
    for cpu in ("native", "haswell"):
        out = tmp_path / cpu
        out.mkdir()
        cmd, outs = stage_command(tiny_build, name, out, inputs)
        prefix = [QEMU, "-cpu", "Haswell"] if cpu == "haswell" else []
        result = subprocess.run([*prefix, *cmd], cwd=tiny_build, capture_output=True, text=True,
                                env=venv_env(PYTHONPATH=str(ROOT)), timeout=900)
        assert result.returncode == 0, f"{name} on {cpu}:\n{result.stderr[-3000:]}"
        got[cpu] = {o: digest(out / o.replace("/", "__")) for o in outs}
    differ = [o for o in got["native"] if got["native"][o] != got["haswell"][o]]
    assert differ == [], f"{name}: {STAGES[name]} gives other bytes on an AVX2-only CPU: {differ}"
    if not inputs:  # and the same bytes as the build itself recorded
        assert got["native"] == {o: digest(tiny_build / o) for o in got["native"]}

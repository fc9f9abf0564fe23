"""The locked environment: the heavy libraries import together, at the pinned versions."""
import re
import subprocess
import sys

from conftest import ROOT

LOCK = (ROOT / "envs" / "requirements.lock").read_text()


def pinned(name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==([^\s\\]+)", LOCK, re.M)
    assert m, f"{name} is not pinned in envs/requirements.lock"
    return m.group(1)


def test_learning_and_conversion_stack_imports_together_at_locked_versions():
    code = (
        "import torch, torchvision, lightly, tensorflow, onnx2tf, onnx, onnxruntime\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "from tflite_micro.python.tflite_micro import runtime\n"
        "import torchvision.ops\n"
        "torchvision.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)  # fails when torch and torchvision do not match\n"
        "print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0], lightly.__version__,"
        " tensorflow.__version__, onnx2tf.__version__, onnx.__version__, onnxruntime.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    versions = out.stdout.split()
    expected = [pinned(n) for n in ("torch", "torchvision", "lightly", "tensorflow", "onnx2tf", "onnx", "onnxruntime")]
    assert versions == expected


def test_every_locked_requirement_carries_a_hash():
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", LOCK.split("\n", 1)[1])
    packages = [b for b in blocks if re.match(r"[A-Za-z0-9_.-]+==", b)]
    assert len(packages) > 100
    unhashed = [b.split()[0] for b in packages if "--hash=sha256:" not in b]
    assert unhashed == []


def test_ffmpeg_binary_ships_with_imageio_ffmpeg():
    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True)
    assert out.returncode == 0 and "libx264" in out.stdout + subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout

"""The locked environment: the heavy libraries import together, at the pinned versions."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LOCK = (ROOT / "envs" / "requirements.lock").read_text()


def lock_entries(text: str) -> list[str]:
    """A pip-compile lock cut into its entries: a `name==version` line with what follows it."""
    return re.split(r"\n(?=[A-Za-z0-9])", text)


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


def test_the_rules_conda_environment_installs_exactly_the_lock():
    """`snakemake --sdm conda` gets the same packages, versions and hashes as scripts/venv.sh:
    envs/pipeline.conda.yaml is regenerated from the lock, never edited by hand."""
    import yaml

    env = yaml.safe_load((ROOT / "envs" / "pipeline.conda.yaml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[0] == "--require-hashes"

    def table(lines):
        return {m.group(1).lower(): (m.group(2), frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)))
                for line in lines for m in [re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)] if m}

    from_lock, from_env = table(lock_entries(LOCK)), table(pip[1:])
    assert len(from_env) == len(pip) - 1 and from_env == from_lock
    assert all(hashes for _version, hashes in from_env.values())
    check = subprocess.run([sys.executable, str(ROOT / "envs" / "conda_env.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_cpu_image_lock_drops_exactly_torch_and_cuda():
    """The Dockerfile's TORCH=cpu variant installs the lock without torch, torchvision and
    the CUDA wheels: every other package stays, with all its hashes."""
    out = subprocess.run([sys.executable, str(ROOT / "envs" / "lock_without_cuda.py"),
                          str(ROOT / "envs" / "requirements.lock")], capture_output=True, text=True, check=True)

    def entries(text):
        return {e.split("==")[0].lower(): e for e in lock_entries(text) if "==" in e}

    full, cpu = entries(LOCK), entries(out.stdout)
    dropped = set(full) - set(cpu)
    assert {"torch", "torchvision"} <= dropped
    assert all(re.match(r"(torch|torchvision|triton|nvidia-|cuda-)", name) for name in dropped), dropped
    assert set(cpu) <= set(full) and all(cpu[name].strip() == full[name].strip() for name in cpu)


def test_venv_sh_stops_before_any_work_with_the_command_that_installs_missing_system_packages():
    """As a user without root, on a machine lacking the Cortex-M7 toolchain, QEMU and Chromium:
    one line with the exact command, exit 1, and no environment created."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="maskinspect-nobody-") as tmp:
        Path(tmp).chmod(0o755)  # the unprivileged user reads its PATH there
        _venv_sh_as_nobody_without_system_packages(Path(tmp))


def _venv_sh_as_nobody_without_system_packages(tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bin"  # a PATH with the shell's basic tools and none of the system packages
    bare.mkdir()
    for tool in ("bash", "sha256sum", "cut", "cat", "id", "dirname"):
        (bare / tool).symlink_to(shutil.which(tool))
    venv = tmp_path / "venv"
    # As root, become nobody; as a user already (the image's own user), stay who we are.
    as_user = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    result = subprocess.run([*as_user, str(bare / "bash"), str(ROOT / "scripts" / "venv.sh"), "true"],
                            capture_output=True, text=True, env={"PATH": str(bare), "MASKINSPECT_VENV": str(venv)})
    assert result.returncode == 1
    # every package found by a command is missing on that PATH; a library (lib:) is found where the system has it
    prefix = ("scripts/venv.sh: error: missing system packages (envs/system-packages.txt): install them with: sudo "
              "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
              "qemu-system-arm chromium nodejs")
    has_libatomic = any((Path(d) / "libatomic.so.1").exists() for d in (
        "/lib", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"))
    assert result.stderr.splitlines() == [prefix + ("" if has_libatomic else " libatomic1")], result.stderr
    assert not venv.exists()


def test_every_system_package_is_named_in_the_readme_quick_start():
    packages = [line.split()[0] for line in (ROOT / "envs" / "system-packages.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert packages and all(p in quick_start for p in packages), packages


def test_the_environment_holds_exactly_the_lock():
    """Whichever installer set it up (uv, or pip where uv cannot be had): every locked distribution
    at its locked version, and nothing else but the project itself."""
    import importlib.metadata as md

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {norm(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK, re.M)}
    installed = {norm(d.metadata["Name"]): d.version for d in md.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert wrong == {}
    assert set(installed) - set(locked) == {"maskinspect"}


def test_venv_sh_installs_with_uv_pinned_by_hash_and_falls_back_to_pip():
    bootstrap = (ROOT / "envs" / "bootstrap.txt").read_text()
    assert re.search(r"^uv==[\d.]+ \\\n(\s+--hash=sha256:[0-9a-f]{64}.*\n)+", bootstrap, re.M)
    script = (ROOT / "scripts" / "venv.sh").read_text()
    assert "--require-hashes" in script.split("pip sync", 1)[1].splitlines()[0]
    assert 'MASKINSPECT_INSTALLER:-uv}" = "pip"' in script and "-m pip install --quiet" in script

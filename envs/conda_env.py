"""Write envs/pipeline.conda.yaml, the conda environment each Snakemake rule names (`conda:`),
from envs/requirements.lock: conda-forge's Python 3.11 and pip, then every locked package at its
pinned version with its hashes, inline (Snakemake deploys the environment file alone, so it
cannot point at the lock with `-r`).

    python3 envs/conda_env.py            # rewrite envs/pipeline.conda.yaml
    python3 envs/conda_env.py --check    # exit 1 if it is not what the lock gives
"""
import sys
from pathlib import Path

from lock_without_cuda import blocks  # the one reader of the lock's blocks (same folder)

HERE = Path(__file__).resolve().parent
LOCK = HERE / "requirements.lock"
ENV = HERE / "pipeline.conda.yaml"

HEADER = """\
# The conda environment of every Snakemake rule (`snakemake --sdm conda`): the locked
# environment of scripts/venv.sh, hashes required. Generated from envs/requirements.lock by
# envs/conda_env.py: do not edit. The rules find the project's own package on PYTHONPATH (the
# Snakefile sets it); firmware_check also needs the system's arm-none-eabi-gcc and
# qemu-system-arm (README, "System packages"), as in the image.
name: maskinspect
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - pip
  - pip:
      - --require-hashes
"""


def pinned(lock_text: str) -> list[str]:
    """One requirement line per locked package: `name==version --hash=sha256:... ...`."""
    header, reqs = blocks(lock_text)
    for raw in header:  # pip-compile's comments only: an option there (an index URL) is refused
        if raw.strip() and not raw.lstrip().startswith("#"):
            raise ValueError(f"{LOCK.name}: unexpected line: {raw!r}")
    lines: list[str] = []
    for block in reqs:
        parts = [raw.strip().rstrip("\\").strip() for raw in block]
        for part in parts[1:]:
            if part and not part.startswith(("#", "--hash=")):
                raise ValueError(f"{LOCK.name}: unexpected line under {parts[0]}: {part!r}")
        lines.append(" ".join([parts[0]] + [p for p in parts[1:] if p.startswith("--hash=")]))
    return lines


def render(lock_text: str) -> str:
    return HEADER + "".join(f"      - {line}\n" for line in pinned(lock_text))


def main(argv: list[str]) -> int:
    want = render(LOCK.read_text(encoding="utf-8"))
    if argv == ["--check"]:
        if not ENV.exists() or ENV.read_text(encoding="utf-8") != want:
            print(f"{ENV.relative_to(HERE.parent)} does not match {LOCK.name}: run python3 envs/conda_env.py",
                  file=sys.stderr)
            return 1
        return 0
    tmp = ENV.with_suffix(".tmp")
    tmp.write_text(want, encoding="utf-8")
    tmp.replace(ENV)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

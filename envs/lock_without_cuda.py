"""Print envs/requirements.lock without torch, torchvision and their CUDA packages.

Used by the Dockerfile's TORCH=cpu variant, which then installs the CPU builds of the same
torch and torchvision versions: python3 envs/lock_without_cuda.py envs/requirements.lock

`blocks` is also the lock reader of envs/conda_env.py. This file imports nothing of the
project's, because the Dockerfile copies it alone.
"""
import re
import sys

CUDA = re.compile(r"^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==")


def blocks(lock_text: str) -> tuple[list[str], list[list[str]]]:
    """The lock's header lines, then one block of lines per requirement: its `name==version`
    line followed by its hashes and pip-compile's `# via` comments."""
    header: list[str] = []
    reqs: list[list[str]] = []
    for line in lock_text.splitlines(keepends=True):
        if line[:1].isalnum():  # a requirement starts a new block
            reqs.append([line])
        elif reqs:
            reqs[-1].append(line)
        else:
            header.append(line)
    return header, reqs


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        header, reqs = blocks(f.read())
    sys.stdout.write("".join(header + [line for block in reqs if not CUDA.match(block[0]) for line in block]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

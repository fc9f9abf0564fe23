"""Print envs/requirements.lock without torch, torchvision and their CUDA packages.

Used by the Dockerfile's TORCH=cpu variant, which then installs the CPU builds of the same
torch and torchvision versions: python3 envs/lock_without_cuda.py envs/requirements.lock
"""
import re
import sys

CUDA = re.compile(r"^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==")


def main(path: str) -> int:
    blocks: list[list[str]] = [[]]
    for line in open(path, encoding="utf-8"):
        if line[:1].isalnum():  # a requirement starts a new block; hashes and comments follow it
            blocks.append([])
        blocks[-1].append(line)
    sys.stdout.write("".join(line for block in blocks if not (block and CUDA.match(block[0])) for line in block))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs beside a GPU machine's own PyTorch (Python 3.12 there),
# downloaded here into .whl/ (git-ignored): pass `.whl` (and `data/frames`, for the demo's frames)
# in the device tool's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for wheel in lightly==1.6.0 lightly-utils==0.0.2 hydra-core==1.3.2 omegaconf==2.3.0 aenum==3.1.15 \
             pyyaml==6.0.2 jsonschema==4.23.0 jsonschema-specifications==2024.10.1 referencing==0.36.2 \
             rpds-py==0.22.3 attrs==24.3.0 safetensors==0.4.5; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$wheel"
done
# antlr4-python3-runtime (omegaconf's) is an sdist only: built into a wheel here
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl

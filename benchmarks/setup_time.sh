#!/usr/bin/env bash
# How long scripts/venv.sh takes to set the environment up, uv against pip, both with a warm cache:
# the first setup (no .venv), and the setup after a one-package change to the lock (tqdm moved).
#
#   benchmarks/setup_time.sh          # prints a markdown table; about 15 minutes
#
# Works on a copy of what venv.sh reads (scripts/, envs/, pyproject.toml, maskinspect/) in a
# temporary folder, with its own .venv; the caches are the user's (uv's and pip's), warmed first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo"
cp -r "$root/scripts" "$root/envs" "$root/maskinspect" "$root/pyproject.toml" "$work/repo/"
changed="$work/changed.lock"
# one package moved: tqdm 4.70.1 -> 4.67.1, with its own hash
python3 - "$root/envs/requirements.lock" "$changed" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
new = ("tqdm==4.67.1 \\\n    --hash=sha256:26445eca388f82e72884e0d580d5464cd801a3ea01e63e5601bdff9ba6a48de2\n")
text, n = re.subn(r"^tqdm==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", new, text, flags=re.M)
assert n == 1
open(sys.argv[2], "w").write(text)
EOF

setup() {  # setup INSTALLER: seconds to a working environment
    local start end
    start=$(date +%s.%N)
    env -u PIP_NO_CACHE_DIR MASKINSPECT_INSTALLER="$1" MASKINSPECT_SKIP_SYSTEM=1 \
        "$work/repo/scripts/venv.sh" python -c "import torch, tensorflow, maskinspect" >/dev/null 2>&1
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.0f}')"
}

echo "| installer | first setup, warm cache (s) | after a one-package change (s) |"
echo "|---|---:|---:|"
for tool in uv pip; do
    rm -rf "$work/repo/.venv"
    cp "$root/envs/requirements.lock" "$work/repo/envs/requirements.lock"
    setup "$tool" >/dev/null            # warms this installer's cache
    rm -rf "$work/repo/.venv"
    first=$(setup "$tool")
    cp "$changed" "$work/repo/envs/requirements.lock"
    after=$(setup "$tool")
    echo "| $tool | $first | $after |"
done

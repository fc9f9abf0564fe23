#!/usr/bin/env bash
# Run a command inside the project's locked environment, creating it first when needed.
#
#   scripts/venv.sh snakemake --cores all     # build the pipeline
#   scripts/venv.sh pytest                    # run the tests
#
# The environment is .venv at the repository root (MASKINSPECT_VENV overrides), made
# with nothing but Python 3.11 and pip from envs/requirements.lock, hashes required.
# It is remade when the lock changes (the lock's sha256 is stamped into it, last, so an
# interrupted install is redone rather than trusted); the project itself is reinstalled (linked,
# a second) when pyproject.toml changes, so a new command appears in .venv/bin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MASKINSPECT_VENV:-$root/.venv}"
lock="$root/envs/requirements.lock"
stamp="$venv/.requirements.lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
project_stamp="$venv/.pyproject.toml.sha256"
project_want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "scripts/venv.sh: error: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python="$(find_python)"
    echo "scripts/venv.sh: creating $venv from envs/requirements.lock (a few minutes, once)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    echo "$want" > "$stamp"
fi
if [ "$(cat "$project_stamp" 2>/dev/null)" != "$project_want" ]; then
    # The project's own package, linked (not copied) so edits take effect; no build isolation,
    # so the locked setuptools builds it and nothing unpinned is downloaded.
    if ! log="$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
                --no-build-isolation -e "$root" 2>&1)"; then
        echo "$log" >&2
        exit 1
    fi
    echo "$project_want" > "$project_stamp"
fi

export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
unset PYTHONHOME
cd "$root"
exec "$@"

#!/usr/bin/env bash
# Run a command inside the project's locked environment, creating it first when needed.
#
#   scripts/venv.sh snakemake --cores all     # build the pipeline
#   scripts/venv.sh pytest                    # run the tests
#
# First the system packages of envs/system-packages.txt (the Cortex-M7 toolchain and QEMU that
# firmware_check runs the model with, Chromium for the browser tests): as root with apt-get,
# what is missing is installed; otherwise the script stops, before any work, with one line
# giving the command (MASKINSPECT_SKIP_SYSTEM=1 skips the check, at your risk).
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

# ---- system packages ---------------------------------------------------------------------------
found() {   # found() PROBE: a command on PATH, newlib:FILE the cross compiler finds for the Cortex-M7,
            # or lib:FILE a shared library in the system's library folders
    case "$1" in
        lib:*)
            local dir
            for dir in /lib /usr/lib /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64; do
                [ -e "$dir/${1#lib:}" ] && return 0
            done
            return 1 ;;
        newlib:*)
            command -v arm-none-eabi-gcc >/dev/null 2>&1 || return 1
            local file
            file="$(arm-none-eabi-gcc -mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb \
                    -print-file-name="${1#newlib:}" 2>/dev/null)"
            [ "${file#/}" != "$file" ] && [ -f "$file" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}
missing_packages() {
    local package probe
    while read -r package probe _rest; do
        case "$package" in ''|'#'*) continue ;; esac
        found "$probe" || printf '%s ' "$package"
    done < "$root/envs/system-packages.txt"
}
if [ -z "${MASKINSPECT_SKIP_SYSTEM:-}" ]; then
    missing="$(missing_packages)"
    if [ -n "$missing" ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "scripts/venv.sh: installing the system packages ${missing% } (apt-get, once)" >&2
            if ! log="$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                        $missing 2>&1)"; then
                echo "$log" | tail -n 5 >&2
                echo "scripts/venv.sh: error: apt-get could not install ${missing% }" >&2
                exit 1
            fi
            missing="$(missing_packages)"
        fi
        if [ -n "$missing" ]; then
            sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo "
            echo "scripts/venv.sh: error: missing system packages (envs/system-packages.txt): install them with: ${sudo}apt-get install -y ${missing% }" >&2
            exit 1
        fi
    fi
fi

# ---- the Python environment ---------------------------------------------------------------------
# uv installs the lock (hashes required) in about a minute from its cache; pip, where uv cannot be
# had, in a few. Both give the same distributions at the same versions (a test compares them).
cache="${MASKINSPECT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maskinspect}"
uv_home="$cache/uv-$(sha256sum "$root/envs/bootstrap.txt" | cut -c1-12)"
installer() {   # prints uv's path, or "pip"
    if [ "${MASKINSPECT_INSTALLER:-uv}" = "pip" ]; then echo pip; return; fi
    if [ ! -x "$uv_home/bin/uv" ]; then
        local python
        python="$(find_python)" || { echo pip; return; }
        rm -rf "$uv_home.partial"
        if "$python" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
               --target "$uv_home.partial" -r "$root/envs/bootstrap.txt" >/dev/null 2>&1; then
            rm -rf "$uv_home" && mv "$uv_home.partial" "$uv_home"
        else
            rm -rf "$uv_home.partial"; echo pip; return
        fi
    fi
    echo "$uv_home/bin/uv"
}
uv_run() { UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never "$@"; }  # the system's certificates; no Python downloads

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python="$(find_python)"
    tool="$(installer)"
    echo "scripts/venv.sh: setting $venv up from envs/requirements.lock with ${tool##*/} (once per lock)" >&2
    rm -f "$stamp" "$project_stamp"
    if [ "$tool" = "pip" ]; then
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    else
        # a lock change syncs in place: uv sync leaves exactly the lock's distributions
        [ -x "$venv/bin/python" ] || uv_run "$tool" venv --quiet --python "$python" "$venv"
        uv_run "$tool" pip sync --quiet --python "$venv/bin/python" --require-hashes "$lock"
    fi
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

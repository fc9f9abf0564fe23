"""The OpenMV bundle: model.tflite, model.txt (labels in output order), main.py and a
manifest, as a folder and as a zip whose bytes depend only on its contents."""
from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

# What the manifest's source revision describes: the code and settings that build the bundle.
SOURCE_PATHS = ("maskinspect", "scripts", "openmv", "params.yaml", "pins", "envs/requirements.lock")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def labels_text(classes) -> str:
    return "".join(f"{c}\n" for c in classes)


def source_revision(root: Path) -> dict:
    """The newest commit that touched the build's sources, and whether they have uncommitted
    changes. Stable across clones and across commits that touch only results (dvc.lock,
    metrics), so a rebuild from a clean clone reproduces the manifest byte for byte."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        log = git("log", "-1", "--format=%H", "--", *SOURCE_PATHS)
        status = git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS)
    except (OSError, subprocess.TimeoutExpired):
        return {"revision": "unknown", "dirty": None}
    if log.returncode != 0 or not log.stdout.strip():
        return {"revision": "unknown", "dirty": None}
    return {"revision": log.stdout.strip(), "dirty": bool(status.stdout.strip())}


def zip_bytes(files: dict[str, bytes], folder: str) -> bytes:
    """A zip with sorted entries, fixed dates and permissions: same files, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever builds it
            z.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buf.getvalue()

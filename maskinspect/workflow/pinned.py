"""Outside inputs, fetched by pin: files this project did not make (OpenMV's TensorFlow Lite Micro
libraries, the published 2020 model, checkpoint and frames), each declared once in
`pins/<name>.yaml` by where it comes from: repository, commit, path, size, sha256, licence.

As Bazel's `http_file` with a distdir: the pin is the dependency (both front ends track
`pins/<name>.yaml`, never the fetched bytes), and the bytes come from wherever they can be had,
checked against the pin before anything uses them:

1. the download cache (`MASKINSPECT_CACHE`, default `~/.cache/maskinspect`), content-addressed
   by sha256 and checked again on every use;
2. the mirror named by `MASKINSPECT_MIRROR`, when set: a folder laid out as the pins' `mirror`
   paths say (as `../shared` is), or a URL serving that layout;
3. the upstream repository's raw files (`https://raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH`;
   `MASKINSPECT_GITHUB_RAW` replaces the host, for a proxy).

Downloads go through pooch (to a temporary file in the cache, hashed, then renamed): a file
whose sha256 differs from the pin is refused and nothing is kept; an interrupted download leaves
nothing under a final name. Every problem is one line naming the input, the URL tried and the
mirror setting.

In params.yaml an outside input is written `pinned:<name>`; the layout turns it into the pin's
path, and a stage turns that into local files with `local()`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from maskinspect.errors import PipelineError

PINS = "pins"                 # the folder of pin files, at the repository root
PREFIX = "pinned:"            # how params.yaml names an outside input
MIRROR_ENV = "MASKINSPECT_MIRROR"
CACHE_ENV = "MASKINSPECT_CACHE"
RAW_ENV = "MASKINSPECT_GITHUB_RAW"
GITHUB_RAW = "https://raw.githubusercontent.com"
TIMEOUT_S = 30


@dataclass(frozen=True)
class PinnedFile:
    path: str      # relative to the input's root (the repository's `folder`)
    size: int
    sha256: str


@dataclass(frozen=True)
class Pin:
    name: str
    what: str
    repository: str   # OWNER/REPO on GitHub
    commit: str       # 40 hex digits
    folder: str       # the input's root inside the repository ("" for the top)
    licence: str
    mirror: str       # the input's root inside a mirror laid out like ../shared
    kind: str         # "file": one file, used as a file; "tree": a folder of files
    files: tuple[PinnedFile, ...]
    source: Path      # the pin file
    base_url: str = ""  # instead of repository and commit: a registry's folder (the npm registry, say)

    def url(self, file: PinnedFile) -> str:
        if self.base_url:  # a file of a package registry, not of a repository
            return f"{self.base_url.rstrip('/')}/{file.path}"
        base = os.environ.get(RAW_ENV) or GITHUB_RAW
        inner = "/".join(p for p in (self.folder, file.path) if p)
        return f"{base.rstrip('/')}/{self.repository}/{self.commit}/{inner}"

    def tree_sha256(self) -> str:
        """One hash for the whole input: of its sorted (path, sha256) pairs."""
        listing = "".join(f"{f.sha256}  {f.path}\n" for f in sorted(self.files, key=lambda f: f.path))
        return hashlib.sha256(listing.encode()).hexdigest()


def pin_path(name: str) -> str:
    return f"{PINS}/{name}.yaml"


def name_of(value: str) -> str | None:
    """The input a params value names (`pinned:<name>`), or None for a plain path."""
    return value[len(PREFIX):] if isinstance(value, str) and value.startswith(PREFIX) else None


def is_pin_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix == ".yaml" and p.parent.name == PINS


def read(path: str | os.PathLike) -> Pin:
    """A pin file, checked for shape: one line naming the file and the problem otherwise."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read the pin ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    need = ("name", "what", "licence", "mirror", "kind", "files",
            *(("url",) if isinstance(doc, dict) and "url" in doc else ("repository", "commit", "folder")))
    if not isinstance(doc, dict) or any(k not in doc for k in need):
        missing = [k for k in need if not isinstance(doc, dict) or k not in doc]
        raise PipelineError(f"{path}: not a pin (missing {', '.join(missing)})")
    files = []
    for i, f in enumerate(doc["files"] or []):
        try:
            pf = PinnedFile(str(f["path"]), int(f["size"]), str(f["sha256"]).lower())
        except (KeyError, TypeError, ValueError):
            raise PipelineError(f"{path}: files[{i}]: needs path, size and sha256") from None
        if len(pf.sha256) != 64 or any(c not in "0123456789abcdef" for c in pf.sha256):
            raise PipelineError(f"{path}: files[{i}] ({pf.path}): sha256 is not 64 hex digits")
        if pf.path.startswith("/") or ".." in Path(pf.path).parts:
            raise PipelineError(f"{path}: files[{i}]: {pf.path!r} leaves the input's folder")
        files.append(pf)
    if not files:
        raise PipelineError(f"{path}: pins no files")
    if doc["kind"] not in ("file", "tree") or (doc["kind"] == "file" and len(files) != 1):
        raise PipelineError(f"{path}: kind must be 'file' (exactly one file) or 'tree'")
    commit = str(doc.get("commit", ""))
    if "url" not in doc and len(commit) != 40:
        raise PipelineError(f"{path}: commit must be the full 40-digit hash, not {commit!r}")
    return Pin(name=str(doc["name"]), what=str(doc["what"]), repository=str(doc.get("repository", "")), commit=commit,
               folder=str(doc.get("folder") or "").strip("/"), licence=str(doc["licence"]),
               mirror=str(doc["mirror"]).strip("/"), kind=doc["kind"], files=tuple(files), source=path,
               base_url=str(doc.get("url", "")))


def cache_root() -> Path:
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "maskinspect"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _blob(cache: Path, sha: str) -> Path:
    return cache / "sha256" / sha[:2] / sha


def _mirror_setting() -> str:
    value = os.environ.get(MIRROR_ENV)
    return f"mirror {MIRROR_ENV}={value}" if value else f"no mirror ({MIRROR_ENV} not set)"


def _verified(path: Path, file: PinnedFile) -> bool:
    try:
        return path.stat().st_size == file.size and _sha256(path) == file.sha256
    except OSError:
        return False


def _copy_downloader(source: Path):
    """A pooch downloader that copies a file of a mirror folder (pooch then hashes and renames)."""
    def download(_url, output_file, _pooch):
        with open(source, "rb") as src:
            if hasattr(output_file, "write"):
                shutil.copyfileobj(src, output_file)
            else:
                with open(output_file, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return download


def _retrieve(url: str, file: PinnedFile, blob: Path, downloader=None) -> None:
    """One file into the cache through pooch: a temporary name, the sha256 checked, renamed."""
    import logging

    import pooch

    pooch.get_logger().setLevel(logging.WARNING)
    downloader = downloader or pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT_S)
    pooch.retrieve(url, known_hash=f"sha256:{file.sha256}", fname=blob.name, path=blob.parent,
                   downloader=downloader, progressbar=False)


def _short(exc: BaseException) -> str:
    """A failed fetch in a few words: the HTTP status, the connection's own reason, or the hash."""
    import re

    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    text = str(exc).strip()
    if isinstance(exc, requests.ConnectionError):
        errno_reason = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", text)
        if errno_reason:
            return f"cannot connect ({errno_reason[-1].strip()})"
        if "IncompleteRead" in text or "ended prematurely" in text or "Connection broken" in text:
            return "the connection broke off mid-file (nothing kept)"
        return "cannot connect"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off mid-file (nothing kept)"
    if "does not match the known hash" in text:
        return "its sha256 differs from the pin (refused; nothing kept)"
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _fetch_file(pin: Pin, file: PinnedFile, cache: Path) -> Path:
    """The file's blob in the cache, verified; fetched from the mirror or upstream when missing."""
    blob = _blob(cache, file.sha256)
    if blob.is_file():
        if _verified(blob, file):
            return blob
        blob.unlink()  # damaged in the cache: never used, fetched again
    tried = []
    mirror = os.environ.get(MIRROR_ENV)
    sources = []
    if mirror:
        inner = "/".join(p for p in (pin.mirror, file.path) if p)
        if "://" in mirror:
            sources.append((f"{mirror.rstrip('/')}/{inner}", None))
        else:
            local = Path(mirror).expanduser() / inner
            if local.is_file():
                sources.append((local.resolve().as_uri(), _copy_downloader(local)))
            else:
                tried.append(f"{local}: not in the mirror")
    sources.append((pin.url(file), None))
    for url, downloader in sources:
        try:
            _retrieve(url, file, blob, downloader)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HTTP and hash errors come in many types
            tried.append(f"{url}: {_short(exc)}")
            continue
        if _verified(blob, file):
            return blob
        blob.unlink(missing_ok=True)
        tried.append(f"{url}: its sha256 differs from the pin (refused; nothing kept)")
    raise PipelineError(f"pinned input {pin.name} ({pin.source}): {file.path}: cannot fetch it: "
                        f"{'; '.join(tried)}; {_mirror_setting()}")


def materialise(pin: Pin, cache: Path | None = None) -> Path:
    """The input as local files, every one checked against the pin: the file itself (kind file)
    or the folder holding the files at their paths (kind tree)."""
    cache = cache or cache_root()
    folder = cache / "inputs" / f"{pin.name}-{pin.tree_sha256()[:16]}"
    if folder.is_dir() and all(_verified(folder / f.path, f) for f in pin.files):
        return folder / pin.files[0].path if pin.kind == "file" else folder
    blobs = [(f, _fetch_file(pin, f, cache)) for f in pin.files]
    try:
        (cache / "inputs").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{pin.name}.", dir=cache / "inputs"))
    except OSError as exc:
        raise PipelineError(f"{cache}: cannot write the input cache ({exc.strerror})") from None
    try:
        for f, blob in blobs:
            target = work / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(blob, target)  # the cache's own bytes, no copy
            except OSError:
                shutil.copyfile(blob, target)
        if folder.exists():
            shutil.rmtree(folder)  # a damaged copy: replaced whole
        try:
            os.replace(work, folder)
        except OSError:
            if not folder.is_dir():  # another process put the same verified input in place first
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return folder / pin.files[0].path if pin.kind == "file" else folder


def local(path: str | os.PathLike | None) -> Path | None:
    """What a stage reads for a path it was given: the input's local files for a pin file
    (fetched and checked), the path itself otherwise."""
    if path is None:
        return None
    return materialise(read(path)) if is_pin_file(path) else Path(path)


def available(name: str, root: Path) -> Path | None:
    """An input's local files if they can be had (cache, mirror or network), else None: for the
    tests and benchmarks that use an outside input when they can."""
    try:
        return materialise(read(root / pin_path(name)))
    except PipelineError:
        return None

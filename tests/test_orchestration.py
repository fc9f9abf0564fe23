"""One graph, two front ends: the same stages and commands, stale-only rebuilds in both,
agreement after either, and the same bytes from either.

The tiny project is built once (the session's tiny_build); every test that changes anything
works on its own copy, so each test passes alone (`-k`) and in any order.
"""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, git, tiny_params, venv_env, write_params
from maskinspect.workflow import params as params_mod
from maskinspect.workflow import dvcfile, stages


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=venv_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def snakemake_jobs(cwd: Path, *extra: str) -> list[str]:
    """Rule names Snakemake would run (dry run), without the `all` target."""
    out = sh(cwd, "snakemake", "-n", *extra).stdout
    jobs = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", out, re.M) if "Nothing to be done" not in out else []
    return sorted(j for j in jobs if j != "all")


def ran(output: str) -> list[str]:
    """Rules a Snakemake build ran, from its log."""
    return sorted(j for j in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", output, re.M) if j != "all")


def dvc_ran(output: str) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", output))


def artifact_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    paths = sorted({o["path"] for st in lock.values() for o in st.get("outs", [])})
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture()
def built(built_copy) -> Path:
    return built_copy


def test_dvc_yaml_is_generated_from_the_table():
    params = params_mod.load_raw(ROOT / "params.yaml")
    assert dvcfile.is_current(ROOT, stages.graph(params, ROOT), params)


def test_every_stage_asks_a_cluster_for_what_it_was_measured_to_need_with_the_margin():
    """A new stage without a measurement fails here; a request below its measured peak too."""
    assert set(stages.MEASURED) == {st.name for st in stages.STAGES}
    for name, (peak_mb, seconds, _where) in stages.MEASURED.items():
        req = stages.requests(name)
        assert req["mem_mb"] >= max(1000, peak_mb * stages.MEMORY_MARGIN), name
        assert req["runtime"] * 60 >= max(600, seconds * stages.TIME_MARGIN), name
        assert ("gpu" in req) == (name in stages.GPU)


def test_both_front_ends_describe_the_same_graph(tiny_source):
    """Every DVC stage is a Snakemake job with the same command, inputs and outputs."""
    from dvc.repo import Repo

    origin = tiny_source
    with Repo(str(origin)) as repo:
        dvc = {}
        for stage in repo.index.stages:
            deps = set()
            for d in stage.deps:
                if d.def_path.endswith("params.yaml"):
                    continue
                folder = (origin / d.def_path)
                # a folder is one DVC dependency and, to Snakemake, the files in it
                deps |= ({str(Path(d.def_path) / f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()}
                         if folder.is_dir() else {d.def_path})
            dvc[stage.cmd] = (stage.name, deps, {o.def_path for o in stage.outs})
    out = sh(origin, "snakemake", "-n", "-p", "--forceall").stdout
    jobs = {}
    for block in out.split("\n\n"):
        m = re.search(r"(?:local)?rule (\w+):\n    input: (.*)\n    output: (.*)\n", block)
        cmd = re.search(r"^Shell command: (python scripts/.*)$", block, re.M)
        if m and cmd and m.group(1) != "all":
            inputs = {i for i in m.group(2).split(", ") if not i.startswith(".snakemake/stage-settings/")}
            jobs[cmd.group(1).strip()] = (m.group(1), inputs, set(m.group(3).split(", ")))
    assert len(jobs) == len(dvc) >= 12
    assert set(jobs) == set(dvc)
    for cmd, (rule, inputs, outputs) in jobs.items():
        name, deps, outs = dvc[cmd]
        assert name.split("@")[0] == rule and cmd.startswith(f"python scripts/{rule}.py ")
        assert inputs == deps, name
        assert outputs == outs, name


def test_second_run_does_nothing_and_both_front_ends_agree(built):
    second = sh(built, "snakemake", "--cores", "2")
    assert "Nothing to be done" in second.stdout + second.stderr
    assert "Data and pipelines are up to date." in sh(built, "dvc", "status").stdout
    assert dvc_ran(sh(built, "dvc", "repro").stdout) == []


def test_fresh_file_times_rebuild_nothing(built):
    """What `git checkout` or `dvc pull` do to times: every file touched, in any order. A dry run
    only says so; a build puts the times back in order and rebuilds nothing."""
    files = [p for p in built.rglob("*") if p.is_file() and ".git" not in p.parts and ".dvc" not in p.parts]
    for p in sorted(files, reverse=True):
        os.utime(p)
    dry = sh(built, "snakemake", "-n")
    assert "have outputs older than their inputs; a build first puts the times" in dry.stderr
    build = sh(built, "snakemake", "--cores", "2")
    assert ran(build.stdout + build.stderr) == []
    assert "hold the bytes dvc.lock records; their output times were put in order" in build.stderr
    assert snakemake_jobs(built) == []


def test_a_last_stage_param_reruns_only_that_stage_and_the_report(built):
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["bundle"]["board"] = "OpenMV H7 Plus"
    write_params(built / "params.yaml", params)
    assert snakemake_jobs(built) == ["bundle", "report"]  # the report shows the manifest
    sh(built, "snakemake", "--cores", "2")
    assert '"board": "OpenMV H7 Plus"' in (built / "dist/openmv/manifest.json").read_text()
    assert "Data and pipelines are up to date." in sh(built, "dvc", "status").stdout
    # The same through DVC.
    params["bundle"]["board"] = "OpenMV H7 Plus (rev B)"
    write_params(built / "params.yaml", params)
    assert dvc_ran(sh(built, "dvc", "repro").stdout) == ["bundle", "report"]
    assert snakemake_jobs(built) == []  # and Snakemake agrees afterwards


@pytest.mark.slow
@pytest.mark.nightly  # heavy: the nightly CI and `pytest -m slow`, not every .ci/run (docs/ci.md)
def test_snakemake_and_dvc_builds_give_the_same_bytes(tiny_build, tiny_source, tmp_path):
    """A clean clone built by `dvc repro`: every artifact byte-identical to the Snakemake build.
    (Slow: a whole second build, about 1.5 minutes; CI's step 3 runs it.)"""
    clone = tmp_path / "dvc-clone"
    git(tmp_path, "clone", "-q", str(tiny_source), str(clone))
    sh(clone, "dvc", "repro")
    ours, theirs = artifact_hashes(tiny_build), artifact_hashes(clone)
    assert len(ours) > 20 and ours == theirs


def test_replacing_one_video_rebuilds_only_its_frames_and_what_follows(built):
    """With your own videos: the frames of the other videos stay."""
    (built / "data/videos").mkdir(parents=True)
    for name in ("line-a", "line-b"):
        shutil.copy(built / f"data/demo/videos/demo-0{'ab'.index(name[-1])}.mp4", built / f"data/videos/{name}.mp4")
    truth = (built / "data/demo/truth.csv").read_text().replace("demo-00-", "line-a-").replace("demo-01-", "line-b-")
    (built / "data/labels").mkdir(exist_ok=True)
    (built / "data/labels/labels.csv").write_text(truth)
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["data"]["source"] = "videos"
    write_params(built / "params.yaml", params)
    # The frames of both videos, built and recorded in dvc.lock; what follows them is a whole
    # second build, which the graph below answers for without running it.
    frames = ["data/frames/line-a.npy", "data/frames/line-b.npy"]
    sh(built, "snakemake", "--cores", "2", *frames)
    assert snakemake_jobs(built, *frames) == []
    # The bundle named: the default target of a build from videos waits on the selection (a
    # checkpoint, which may hand frames off for labelling), so a dry run of it stops there.
    whole = snakemake_jobs(built, "dist/openmv.zip")
    assert "extract_frames" not in whole and {"pretrain", "finetune", "bundle"} <= set(whole)

    # Replace line-b with another video of the same length.
    shutil.copy(built / "data/demo/videos/demo-00.mp4", built / "data/videos/line-b.mp4")
    assert snakemake_jobs(built, *frames) == ["extract_frames"]
    jobs = snakemake_jobs(built, "dist/openmv.zip")
    assert jobs.count("extract_frames") == 1 and "render_demo" not in jobs
    assert {"pretrain", "finetune", "bundle"} <= set(jobs)
    dry = sh(built, "snakemake", "-n", "dist/openmv.zip").stdout
    assert "data/frames/line-b.npy" in dry and "output: data/frames/line-a.npy" not in dry
    status = sh(built, "dvc", "status").stdout
    assert "extract_frames@line-b" in status and "extract_frames@line-a" not in status


def test_a_snakemake_config_override_is_refused_with_one_line(tiny_source):
    for args in (["--config", "finetune={epochs: 5}"], ["--configfile", str(ROOT / "params.yaml")]):
        result = sh(tiny_source, "snakemake", "-n", *args, check=False)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("Snakefile: error:")]
        assert errors == ["Snakefile: error: settings live in params.yaml: edit it, or run "
                          "`dvc exp run -S key=value`; Snakemake's --config and --configfile are not used"]


def test_training_stages_ask_the_cluster_for_a_gpu_as_the_setting_says(monkeypatch):
    from maskinspect.workflow import frontend, stages

    assert {"pretrain", "embed", "finetune", "crossval"} <= stages.GPU
    monkeypatch.delenv("MASKINSPECT_GPU_GRES", raising=False)
    monkeypatch.delenv("MASKINSPECT_GPUS", raising=False)
    assert frontend.gpu_request() == {"gpu": 1}
    monkeypatch.setenv("MASKINSPECT_GPU_GRES", "gpu:a100:1")
    assert frontend.gpu_request() == {"gres": "gpu:a100:1"}  # SLURM's --gres
    monkeypatch.setenv("MASKINSPECT_GPUS", "0")
    assert frontend.gpu_request() == {}  # a cluster without GPUs, CI's

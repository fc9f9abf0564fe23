"""One graph, two front ends: the same stages and commands, stale-only rebuilds in both,
agreement after either, and the same bytes from either.

The module builds a tiny project once (a git repository with DVC, as a clone is) and then
changes it step by step; the tests run in file order.
"""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_repo, git, init_git, tiny_params, venv_env, write_params
from maskinspect import params as params_mod, pipeline


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=venv_env())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def snakemake_jobs(cwd: Path, *extra: str) -> list[str]:
    """Rule names Snakemake would run (dry run), without the `all` target."""
    out = sh(cwd, "snakemake", "-n", *extra).stdout
    jobs = re.findall(r"^(?:local)?rule (\w+):", out, re.M) if "Nothing to be done" not in out else []
    return sorted(j for j in jobs if j != "all")


def dvc_ran(output: str) -> list[str]:
    return sorted(re.findall(r"Running stage '([^']+)'", output))


def artifact_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    paths = sorted({o["path"] for st in lock.values() for o in st.get("outs", [])})
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The tiny project, committed, not built: what a clean clone starts from."""
    work = copy_repo(tmp_path_factory.mktemp("orchestration") / "origin")
    write_params(work / "params.yaml", tiny_params())
    sh(work, "python", "scripts/sync_dvc.py")
    return init_git(work)


@pytest.fixture(scope="module")
def built(origin, tmp_path_factory) -> Path:
    """A clone of the project built by Snakemake."""
    clone = tmp_path_factory.mktemp("snakemake") / "clone"
    sh(origin.parent, "git", "clone", "-q", str(origin), str(clone))
    sh(clone, "snakemake", "--cores", "2")
    return clone


def test_dvc_yaml_is_generated_from_the_definition():
    params = params_mod.load(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == pipeline.dvc_yaml_text(params, ROOT)


def test_both_front_ends_describe_the_same_graph(origin):
    """Every DVC stage is a Snakemake job with the same command, inputs and outputs."""
    from dvc.repo import Repo

    with Repo(str(origin)) as repo:
        dvc = {}
        for stage in repo.index.stages:
            deps = {d.def_path for d in stage.deps if not d.def_path.endswith("params.yaml")}
            dvc[stage.cmd] = (stage.name, deps, {o.def_path for o in stage.outs})
    out = sh(origin, "snakemake", "-n", "-p", "--forceall").stdout
    jobs = {}
    for block in out.split("\n\n"):
        m = re.search(r"(?:local)?rule (\w+):\n    input: (.*)\n    output: (.*)\n", block)
        cmd = re.search(r"^Shell command: (python scripts/.*)$", block, re.M)
        if m and cmd and m.group(1) != "all":
            inputs = {i for i in m.group(2).split(", ") if not i.startswith(".snakemake/stage-settings/")}
            jobs[cmd.group(1).strip()] = (m.group(1), inputs, set(m.group(3).split(", ")))
    assert set(jobs) == set(dvc)
    for cmd, (rule, inputs, outputs) in jobs.items():
        name, deps, outs = dvc[cmd]
        assert name.split("@")[0] == rule
        assert inputs == deps, name
        assert outputs == outs, name


def test_second_run_does_nothing_and_both_front_ends_agree(built):
    second = sh(built, "snakemake", "--cores", "2")
    assert "Nothing to be done" in second.stdout + second.stderr
    status = sh(built, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout
    repro = sh(built, "dvc", "repro")
    assert dvc_ran(repro.stdout) == []


def test_fresh_file_times_rebuild_nothing(built):
    """What `git checkout` or `dvc pull` do to times: every file touched, in any order."""
    files = [p for p in built.rglob("*") if p.is_file() and ".git" not in p.parts]
    for p in sorted(files, reverse=True):
        os.utime(p)
    assert snakemake_jobs(built) == []


def test_a_last_stage_param_reruns_only_that_stage(built):
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["bundle"]["board"] = "OpenMV H7 Plus"
    write_params(built / "params.yaml", params)
    assert snakemake_jobs(built) == ["bundle"]
    sh(built, "snakemake", "--cores", "2")
    assert '"board": "OpenMV H7 Plus"' in (built / "dist/openmv/manifest.json").read_text()
    assert "Data and pipelines are up to date." in sh(built, "dvc", "status").stdout
    # The same through DVC.
    params["bundle"]["board"] = "OpenMV H7 Plus (rev B)"
    write_params(built / "params.yaml", params)
    assert dvc_ran(sh(built, "dvc", "repro").stdout) == ["bundle"]
    assert snakemake_jobs(built) == []  # and Snakemake agrees afterwards


def test_snakemake_and_dvc_builds_give_the_same_bytes(origin, built, tmp_path):
    """A second clean clone built by `dvc repro`: every artifact byte-identical."""
    clone = tmp_path / "dvc-clone"
    sh(origin.parent, "git", "clone", "-q", str(origin), str(clone))
    sh(clone, "dvc", "repro")
    params = yaml.safe_load((built / "params.yaml").read_text())
    params["bundle"] = tiny_params()["bundle"]
    write_params(built / "params.yaml", params)
    sh(built, "snakemake", "--cores", "2")
    ours, theirs = artifact_hashes(built), artifact_hashes(clone)
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
    sh(built, "snakemake", "--cores", "2")
    assert snakemake_jobs(built) == []

    # Replace line-b with another video of the same length.
    shutil.copy(built / "data/demo/videos/demo-00.mp4", built / "data/videos/line-b.mp4")
    jobs = snakemake_jobs(built)
    assert jobs.count("frames") == 1 and "render_demo" not in jobs
    assert "frames" in jobs and {"pretrain", "finetune", "bundle"} <= set(jobs)
    dry = sh(built, "snakemake", "-n").stdout
    assert "data/frames/line-b.npy" in dry and "output: data/frames/line-a.npy" not in dry
    status = sh(built, "dvc", "status").stdout
    assert "frames@line-b" in status and "frames@line-a" not in status

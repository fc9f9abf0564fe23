"""The tiny pipeline on a real (single-node) SLURM cluster, every rule a SLURM job, through
Snakemake's SLURM executor plugin and profiles/slurm; the result must be the local build's, bit
for bit. (The full demo on the cluster is the same command on this repository.)"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import git, venv_env
from maskinspect.workflow import params as params_mod
from maskinspect.workflow import stages
from slurm_cluster import DEFAULT_CONF, missing_tools, slurm_cluster

pytestmark = [pytest.mark.slow, pytest.mark.nightly]  # heavy: not every .ci/run (docs/ci.md)


def test_tiny_pipeline_on_slurm_gives_the_local_build(tiny_source, tiny_build, tmp_path):
    missing = missing_tools()
    if missing:
        pytest.skip(f"SLURM is not installed here (missing {', '.join(missing)}; Debian: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's daemons run as root")
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        pytest.skip(f"{DEFAULT_CONF} exists: a SLURM installation of this machine's own, left alone")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tiny_source), str(clone))
    committed = (tiny_build / "dvc.lock").read_text()  # the local build of the same project
    with slurm_cluster(tmp_path / "slurm") as cluster_env:
        # No GPU on this node: the documented switch.
        env = venv_env(SLURM_CONF=cluster_env["SLURM_CONF"], MASKINSPECT_GPUS="0")
        result = subprocess.run(
            ["snakemake", "--profile", "profiles/slurm", "--slurm-status-command", "squeue",
             "--slurm-no-account", "--slurm-keep-successful-logs", "--slurm-init-seconds-before-status-checks", "5",
             "--default-resources", "slurm_partition=main", "mem_mb=1000", "runtime=60"],
            cwd=clone, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        completions = (tmp_path / "slurm" / "jobcomp.log").read_text()
        sacct = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "jobid,jobname,state"], env=env,
                               capture_output=True, text=True).stdout
    # Every rule ran as a SLURM job: one completed job per stage instance, and one log per rule.
    log = result.stdout + result.stderr
    jobs = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    # One job per stage instance (frames: one per video); `all` runs locally.
    instances = len(stages.graph(params_mod.load_raw(clone / "params.yaml"), clone).instances())
    per_video, once = ["extract_frames"], ["render_demo", "pretrain", "embed", "select_frames", "annotate",
                                          "camera_frames", "finetune", "export_onnx", "quantize", "tflm_check",
                                          "firmware_check", "bundle", "report"]
    assert instances == len(once) + 2 * len(per_video)  # the tiny demo has 2 videos
    assert len(jobs) == instances, log[-3000:]
    completed = set(re.findall(r"JobId=(\d+) .*JobState=COMPLETED", completions))
    assert set(jobs) <= completed
    assert sacct.count("COMPLETED") >= instances
    rule_logs = {p.parent.name if p.parent.name.startswith("rule_") else p.parent.parent.name
                 for p in (clone / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {"rule_render_demo", "rule_extract_frames", "rule_pretrain", "rule_quantize", "rule_firmware_check",
            "rule_bundle"} <= rule_logs
    # The same bytes as the local build.
    (tmp_path / "committed.lock").write_text(committed)
    check = subprocess.run(["python", "scripts/check_lock.py", str(tmp_path / "committed.lock"), "dvc.lock"],
                           cwd=clone, capture_output=True, text=True, env=venv_env())
    assert check.returncode == 0, check.stderr
    assert "dist/openmv.zip" in committed and Path(clone / "dist/openmv.zip").is_file()


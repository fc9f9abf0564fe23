"""A real single-node SLURM cluster for tests: munge and the SLURM daemons from Debian's
packages (munge, slurm-wlm), configured in a temporary folder, started and stopped here."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_tools() -> list[str]:
    return [t for t in (*DAEMONS, "sbatch", "squeue", "sinfo", "sacct") if shutil.which(t) is None
            and not Path(f"/usr/sbin/{t}").exists()]


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=maskinspect-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket.2
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/jobcomp.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


# Snakemake's slurm-jobstep executor drops every SLURM_* variable, SLURM_CONF included, before
# the nested `srun` of each job, which then reads the default path, as on a real cluster's
# nodes: the test cluster's configuration is linked there while it runs.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


@contextlib.contextmanager
def slurm_cluster(work: Path):
    """Yield the environment (SLURM_CONF) under which sbatch & co. talk to the new cluster."""
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("munge", "state", "spool"):
        (work / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    conf = work / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, dir=work, ctld_port=_free_port(), slurmd_port=_free_port(),
                                      cpus=os.cpu_count(), memory=memory))
    key = work / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    logs = []
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        raise RuntimeError(f"{DEFAULT_CONF} exists: this machine has its own SLURM configuration")
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.symlink_to(conf)
    try:
        def start(*cmd, name):
            log = (work / f"{name}.stdout").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT))

        start(_exe("munged"), "--foreground", "--force", f"--key-file={key}",
              f"--socket={work / 'munge' / 'munge.socket.2'}", f"--pid-file={work / 'munge' / 'munged.pid'}",
              f"--log-file={work / 'munge' / 'munged.log'}", f"--seed-file={work / 'munge' / 'munged.seed'}",
              name="munged")
        _wait(lambda: (work / "munge" / "munge.socket.2").exists(), "munged", work)
        start(_exe("slurmctld"), "-D", "-i", "-f", str(conf), name="slurmctld")
        start(_exe("slurmd"), "-D", "-f", str(conf), "-N", host, name="slurmd")

        def node_idle():
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.strip().startswith("idle")

        _wait(node_idle, "the SLURM node", work, timeout=60)
        yield env
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        DEFAULT_CONF.unlink(missing_ok=True)


def _wait(ready, what: str, work: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(work.glob("*.log"))
                             if p.is_file())
            raise RuntimeError(f"{what} did not come up in {timeout:.0f} s\n{logs}")
        time.sleep(0.5)

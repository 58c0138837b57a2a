"""A real one-node Slurm cluster for the tests (scripts/slurm-local.sh), started like a test database.

Where this machine cannot host it (not root, no apt), the tests skip with the script's reason;
under ``CI=true`` they fail instead, so CI never passes by skipping them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.sweep import ROOT

SCRIPT = ROOT / "scripts" / "slurm-local.sh"
SHIMS = ROOT / "scripts" / "slurm-shims"
CANNOT_HOST = 77  # the script's exit status when this machine cannot host the cluster
# what a job of the local cluster may ask for: 1 of its CPUs, 2 GB, no GPU, and no partition name
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=10"]


@dataclass
class Cluster:
    state_dir: Path
    env: dict[str, str]  # SLURM_CONF and PATH (sacct shim first) for sbatch, squeue, submitit

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def jobs(self, job_id: str = "") -> dict[str, dict[str, str]]:
        """`scontrol show job` of a job or array (default: every job the cluster still knows):
        "<array>_<task>" (or the plain id) -> its fields."""
        out = self.run("scontrol", "-o", "show", "job", *([job_id] if job_id else [])).stdout
        jobs = {}
        for line in out.splitlines():
            fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
            key = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}" if "ArrayJobId" in fields else fields["JobId"]
            jobs[key] = fields
        return jobs


def script(command: str, state_dir: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run ``scripts/slurm-local.sh <command>`` with its state under ``state_dir``."""
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state_dir)}
    return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=300, **kwargs)


def start_cluster(state_dir: Path) -> Cluster:
    """Start the cluster; skip (fail under CI=true) where this machine cannot host one."""
    started = script("start", state_dir)
    if started.returncode == CANNOT_HOST:
        reason = started.stderr.strip()
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Slurm tests: {reason}")
        pytest.skip(reason)
    assert started.returncode == 0, started.stderr
    env = {**os.environ, "SLURM_CONF": str(state_dir / "etc" / "slurm.conf"),
           "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}"}
    return Cluster(state_dir, env)


def daemon_pids(state_dir: Path) -> dict[str, int]:
    """The pids the script recorded for munged, slurmctld and slurmd."""
    return {p.stem: int(p.read_text()) for p in (state_dir / "run").glob("*.pid")}


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster for one test module, stopped at its end; this process and its children submit to it."""
    state_dir = tmp_path_factory.mktemp("slurm")
    cluster = start_cluster(state_dir)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
        env.setenv("PATH", cluster.env["PATH"])
        yield cluster
    pids = daemon_pids(state_dir)
    stopped = script("stop", state_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert not [name for name, pid in pids.items() if running(pid)]

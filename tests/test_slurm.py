"""Sweeps on a real one-node Slurm cluster (scripts/slurm-local.sh), compared with a local run.

The cluster is started once for this module and stopped at its end; the micro study is trained
once by the local reference run and reused by every Slurm sweep. Where this machine cannot host
the cluster (not root, no apt) the cluster tests skip with that reason; under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from submitit.slurm.slurm import SlurmInfoWatcher

from helpers.slurm import CANNOT_HOST, LAUNCHER, SCRIPT, daemon_pids, running, script, start_cluster
from helpers.sweep import MICRO, ROOT, run_sweep

SWEEP = ["+sweep=duration", "merge.quantity=2", "logger=none"]
DURATIONS = [8, 16, 32]
COLUMNS = ["variant", "task", "metric", "value", "status", "model_hash", "steps", "weights"]
NODE = socket.gethostname().split(".")[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm-sweeps")


@pytest.fixture(scope="module")
def cache(root):
    return root / "_cache"


@pytest.fixture(scope="module")
def local(root, cache):
    """The reference: the same sweep run locally (basic launcher); it trains the micro study."""
    run = run_sweep(root, *SWEEP, f"merge.duration={','.join(map(str, DURATIONS))}", name="local", cache=cache)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run.results()


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COLUMNS].sort_values(COLUMNS[:3], ignore_index=True)


def array_id(output: str) -> str:
    (found,) = re.findall(r"Submitted Slurm job array (\d+)", output)
    return found


def job_env(log: Path) -> dict[str, str]:
    """The environment a job's batch script printed (the `env` setup line) into its log."""
    return dict(line.split("=", 1) for line in log.read_text().splitlines() if re.match(r"^[A-Z_][A-Z0-9_]*=", line))


@pytest.mark.slow
def test_sweep_runs_every_variant_as_a_slurm_job_with_the_rows_of_a_local_run(cluster, root, cache, local,
                                                                                 monkeypatch):
    monkeypatch.setenv("WSM_EXP_SLURM_PROBE", f"probe-{os.getpid()}")
    run = run_sweep(root, *SWEEP, "merge.duration=8,16,32", *LAUNCHER, "hydra.launcher.setup=[env]", name="slurm",
                    cache=cache, fresh_results_cache=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    # every variant ran as a task of one Slurm job array, on this cluster's node
    array = array_id(output)
    jobs = cluster.jobs(array)
    assert sorted(jobs) == [f"{array}_{task}" for task in range(len(DURATIONS))]
    for fields in jobs.values():
        assert (fields["JobState"], fields["NodeList"], fields["JobName"]) == ("COMPLETED", NODE, "wsm-slurm")
    # ... with this interpreter and this environment (code path, offline switches, anything else)
    submitit = run.sweep_dir / ".submitit"
    assert f"{sys.executable} -u -m submitit.core._submit" in next(submitit.glob(f"{array}/*.sh")).read_text()
    for task in range(len(DURATIONS)):
        env = job_env(submitit / f"{array}_{task}" / f"{array}_{task}_0_log.out")
        assert env["SLURM_ARRAY_JOB_ID"] == array and env["SLURM_ARRAY_TASK_ID"] == str(task)
        for key in ["WSM_EXP_SLURM_PROBE", "PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "WANDB_MODE",
                    "WANDB_DATA_DIR", "PATH"]:
            assert env.get(key) == os.environ.get(key), key
    # exactly the rows of the local run, really computed (fresh merge and score caches)
    frame = run.results()
    pd.testing.assert_frame_equal(rows(frame), rows(local), check_exact=False, rtol=1e-5)
    assert frame["eval_seconds"].sum() > 0
    # the end-of-sweep aggregation ran once, in the submitting process, never inside a job
    assert output.count("variant(s):") == 1
    assert run.stdout.strip().splitlines()[-1] == f"Sweep folder: {run.sweep_dir}"
    job_logs = "".join(p.read_text() for p in submitit.glob(f"{array}_*/*_log.*"))
    assert "variant(s):" not in job_logs and "Sweep folder" not in job_logs


@pytest.mark.slow
def test_cancelled_job_becomes_a_failed_row_and_a_rerun_completes_it(cluster, root, cache, local):
    durations = DURATIONS[:2]
    overrides = [*SWEEP, f"merge.duration={','.join(map(str, durations))}", *LAUNCHER]
    name = "cancel"
    args = [sys.executable, "-m", "wsm_exp", f"paths.sweeps={root}", f"paths.cache={cache}", f"sweep_name={name}",
            f"paths.merges={root}/{name}-merges", f"paths.scores={root}/{name}-scores", *MICRO, *overrides]
    sweep = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (started := cluster.run("squeue", "-h", "-n", f"wsm-{name}", "-t", "RUNNING", "-o", "%i").stdout.split()):
        assert time.time() < deadline and sweep.poll() is None, "no job of the sweep started running"
        time.sleep(0.1)
    task = started[0]
    cluster.run("scancel", task)  # at once: the job dies long before it could write a result
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, output[-5000:]
    assert cluster.jobs(task)[task]["JobState"] == "CANCELLED"
    assert re.search(rf"Slurm job {task} \(#\d+ above\) ended without a result \(state CANCELLED", output)
    frame = pd.read_parquet(root / name / "results.parquet")
    failed = frame[frame["status"] == "failed"]
    cancelled_duration = durations[int(task.split("_")[1])]
    assert len(failed) == 1 and failed["kind"].iloc[0] == "wsm"
    assert failed["duration_steps"].iloc[0] == cancelled_duration
    assert "Rerun the same command" in failed["error"].iloc[0]
    assert f"FAILED {failed['variant'].iloc[0]}" in output
    assert set(frame.loc[frame["status"] == "ok", "variant"]) == set(frame["variant"]) - set(failed["variant"])

    rerun = run_sweep(root, *overrides, name=name, cache=cache, fresh_results_cache=True)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-5000:]
    redone = rerun.results()
    assert set(redone["status"]) == {"ok"}
    expected = local[local["variant"].isin(redone["variant"])]
    assert set(expected.loc[expected["kind"] == "wsm", "duration_steps"]) == set(durations)
    pd.testing.assert_frame_equal(rows(redone), rows(expected), check_exact=False, rtol=1e-5)


@pytest.mark.slow
def test_sacct_shim_gives_submitit_every_final_state(cluster):
    def submit(*args):
        return cluster.run("sbatch", "--parsable", "-o", "/dev/null", *args).stdout.strip()

    done, failed = submit("--array=0-1", "--wrap", "true"), submit("--wrap", "exit 3")
    held = submit("--hold", "--array=0-2", "--wrap", "true")
    cluster.run("scancel", held)  # a whole array cancelled while pending: one record for all its tasks
    deadline = time.time() + 60
    while cluster.run("squeue", "-h", "-j", f"{done},{failed}", "-o", "%i").stdout.strip():
        assert time.time() < deadline, "the jobs did not finish"
        time.sleep(0.1)
    out = cluster.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", done, "-j", failed,
                      "-j", held).stdout
    info = SlurmInfoWatcher().read_info(out)  # exactly how submitit reads sacct
    states = {job: fields["State"] for job, fields in info.items()}
    assert states == {f"{done}_0": "COMPLETED", f"{done}_1": "COMPLETED", failed: "FAILED",
                      **{f"{held}_{t}": "CANCELLED" for t in range(3)}}
    assert info[failed]["NodeList"] == NODE
    assert cluster.run("sacct", "-o", "JobID,Elapsed", "-j", done, check=False).returncode == 2


@pytest.mark.slow
def test_second_cluster_takes_free_ports_and_stop_ends_only_its_own_daemons(cluster, tmp_path):
    first = daemon_pids(cluster.state_dir)
    other = start_cluster(tmp_path / "other")
    ports = [re.search(r"SlurmctldPort=(\d+)", Path(c.env["SLURM_CONF"]).read_text())[1] for c in (cluster, other)]
    assert ports[0] != ports[1]
    second = daemon_pids(other.state_dir)
    assert len(second) == 3 and all(running(pid) for pid in second.values())
    assert script("stop", other.state_dir).returncode == 0
    assert not [pid for pid in second.values() if running(pid)]
    assert all(running(pid) for pid in first.values())
    assert script("status", cluster.state_dir).returncode == 0
    assert script("status", other.state_dir).returncode == 3


def test_stop_never_kills_a_process_that_reuses_a_recorded_pid(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "run").mkdir()
        for daemon in ("munged", "slurmctld", "slurmd"):
            (tmp_path / "run" / f"{daemon}.pid").write_text(f"{bystander.pid}\n")
        stopped = script("stop", tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert bystander.poll() is None
        assert not list((tmp_path / "run").glob("*.pid"))
    finally:
        bystander.kill()
        bystander.wait()


def test_start_without_root_says_why_and_exits_77():
    scratch = Path(tempfile.mkdtemp(prefix="slurm-local-"))  # outside pytest's root-only temp folders
    try:
        scratch.chmod(0o755)
        command = [str(SCRIPT), "start"]
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                pytest.skip("root without runuser: cannot start the script as another user")
            shutil.copy(SCRIPT, scratch / SCRIPT.name)  # the worktree may be unreadable to nobody
            command = ["runuser", "-u", "nobody", "--", str(scratch / SCRIPT.name), "start"]
        env = {**os.environ, "SLURM_LOCAL_DIR": str(scratch / "state")}
        refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(scratch)
    assert refused.returncode == CANNOT_HOST
    assert "cannot host a Slurm cluster here" in refused.stderr and "root" in refused.stderr

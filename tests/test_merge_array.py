"""The merge stage split over output shards: P local processes, or one Slurm array of P tasks.

The Slurm tests run on a real one-node cluster (scripts/slurm-local.sh), started once for this
module; where this machine cannot host it they skip with the reason, under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.merging import updates_series
from helpers.slurm import LAUNCHER
from helpers.sweep import micro_study, run_sweep
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from safetensors.torch import save_file

import wsm_exp.__main__  # noqa: F401  (registers the schemas and the ${cwd:} resolver, as the entry point does)
from wsm_exp.merging.merger import merge_plans
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window
from wsm_exp.sweep.stage.merge_array import MergeArrayError, stage_executor
from wsm_exp.sweep.stage.merge_stage import run_merge_stage

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SHARD_MIB = "0.04"  # ~42 kB: the tiny Llama's merges split into several shards
SWEEP = ["merge.quantity=2,3", "merge.curve=mean,1-sqrt"]
NODE = socket.gethostname().split(".")[0]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("array-series")
    updates_series(root / "run", [10, 20, 30, 40])
    for file in (root / "run").rglob("*"):  # settled checkpoints (the identity cache skips racy files)
        os.utime(file, (time.time() - 60, time.time() - 60))
    return root / "run"


def sweep_config(tmp: Path, series: Path, *extra: str, shard_mib: str = SHARD_MIB):
    """The config Hydra hands the callbacks of ``python -m wsm_exp`` over a user series (``extra``: unswept keys)."""
    base = [f"paths.sweeps={tmp}/sweeps", "logger=none", "eval=benchmarks", f"series.path={series}",
            "series.tokens_per_step=1000", "baselines.wsd_shapes=[]", f"merge_shard_mib={shard_mib}", *extra]
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("config", overrides=base, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.overrides.task = [*base, *SWEEP]
    return cfg


def stage(cfg):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return run_merge_stage(cfg)


def files(merges: Path) -> dict[str, bytes]:
    """Every file under the merge cache, by relative path (lock files are removed on release)."""
    return {str(p.relative_to(merges)): p.read_bytes() for p in sorted(merges.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(series, tmp_path_factory):
    """The stage in one process: the bytes every split must reproduce."""
    tmp = tmp_path_factory.mktemp("one-process")
    cfg = sweep_config(tmp, series)
    summary = stage(cfg)
    merged = files(Path(cfg.paths.merges))
    assert summary.merged == 4 and len([f for f in merged if f.endswith(".safetensors")]) > 4 * 2  # sharded
    return merged


def test_stage_in_two_local_processes_writes_the_bytes_of_one(series, reference, tmp_path, caplog):
    cfg = sweep_config(tmp_path, series, "merge_stage_tasks=2")
    with caplog.at_level("INFO", logger="wsm_exp.merging.merger"):
        assert stage(cfg).merged == 4
    assert "merging in one process" not in caplog.text  # split in two, not fallen back to one
    assert files(Path(cfg.paths.merges)) == reference


def test_stage_says_when_its_merges_cannot_be_split(series, tmp_path, caplog):
    cfg = sweep_config(tmp_path, series, "merge_stage_tasks=2", shard_mib="2048")  # one shard per merge
    with caplog.at_level("INFO", logger="wsm_exp.merging.merger"):
        assert stage(cfg).merged == 4
    assert "merging in one process, not 2: the outputs have one shard each" in caplog.text


@pytest.mark.slow
def test_stage_as_a_slurm_array_writes_the_bytes_of_one_process(cluster, series, reference, tmp_path):
    cfg = sweep_config(tmp_path, series, "merge_stage_tasks=2", "sweep_name=arr", *LAUNCHER)
    summary = stage(cfg)
    assert (summary.merged, summary.cached) == (4, 0)
    assert files(Path(cfg.paths.merges)) == reference  # every shard, index and merge.json, byte for byte
    deadline = time.time() + 60  # a task's result is written just before its process ends
    while {job["JobState"] for job in merge_tasks(cluster, "wsm-arr-merge").values()} != {"COMPLETED"}:
        assert time.time() < deadline, merge_tasks(cluster, "wsm-arr-merge")
        time.sleep(0.2)
    tasks = merge_tasks(cluster, "wsm-arr-merge")
    assert len(tasks) == 2 and {job["NodeList"] for job in tasks.values()} == {NODE}
    (array,) = {key.split("_")[0] for key in tasks}
    logs = Path(cfg.paths.sweep_dir) / ".submitit"
    assert sorted(p.name for p in logs.glob(f"{array}_*")) == [f"{array}_0", f"{array}_1"]  # each task's log
    assert stage(cfg).cached == 4  # a rerun submits nothing


@pytest.mark.slow
def test_a_cancelled_task_fails_the_stage_publishes_nothing_and_a_rerun_completes(cluster, series, reference,
                                                                                   tmp_path):
    cfg = sweep_config(tmp_path, series, "merge_stage_tasks=2", "sweep_name=cancel", *LAUNCHER)
    outcome = {}

    def run():
        try:
            outcome["summary"] = stage(cfg)
        except Exception as err:  # noqa: BLE001 — the test asserts on it
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while not (started := [key for key, job in merge_tasks(cluster, "wsm-cancel-merge").items()
                            if job["JobState"] == "RUNNING"]):
        assert time.time() < deadline and thread.is_alive(), "no task of the merge array started running"
        time.sleep(0.1)
    task = started[0]
    cluster.run("scancel", task)  # at once: long before its shards are written
    thread.join(timeout=300)
    error = outcome.get("error")
    assert isinstance(error, MergeArrayError), outcome
    array = task.split("_")[0]
    log = Path(cfg.paths.sweep_dir) / ".submitit" / task / f"{task}_0_log.err"
    assert f"Slurm job array {array}" in str(error) and f"task {task} ended without a result" in str(error)
    assert "state CANCELLED" in str(error) and str(log) in str(error)
    assert "the variants' jobs merge their own variants" in str(error)
    merges = Path(cfg.paths.merges)
    assert not merges.exists() or not list(merges.iterdir())  # nothing published, no temporary left
    summary = stage(cfg)  # the rerun
    assert (summary.merged, summary.cached) == (4, 0)
    assert files(merges) == reference



@pytest.mark.slow
def test_a_task_that_raises_fails_the_stage_with_its_error_and_publishes_nothing(cluster, tmp_path):
    for step in (1, 2):  # a NaN in the second shard: only the task merging that shard sees it
        tensors = {f"w{i}": torch.ones(2000) for i in range(8)}
        if step == 2:
            tensors["w6"][3] = float("nan")
        save_file(tensors, tmp_path / f"step_{step}.safetensors")
    plan = build_plan(select_window(load_series(tmp_path), quantity=2), curve="mean", identify=False)
    executor = stage_executor(sweep_config(tmp_path, tmp_path, "merge_stage_tasks=2", "sweep_name=nan", *LAUNCHER))
    with pytest.raises(MergeArrayError) as raised:
        merge_plans([plan], [tmp_path / "out" / "m"], shard_size_bytes=20_000, progress=False, workers=2,
                    executor=executor)
    message = str(raised.value)
    assert re.search(rf"task {executor.job_id}_\d failed: .*MergeError: Tensor 'w6' .* contains NaN or Inf", message)
    assert str(tmp_path / "sweeps" / "nan" / ".submitit" / executor.job_id) + "_" in message  # its log
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_slurm_sweep_runs_its_merge_stage_as_an_array_with_the_results_of_a_local_sweep(cluster, root, cache,
                                                                                         tmp_path):
    series, heldout = micro_study(root, cache)
    user = [f"series.path={series}", f"series.heldout={heldout}", "+sweep=duration", "merge.quantity=2",
            "merge.duration=8,16", "baselines.wsd_shapes=[]", "logger=none", "merge_shard_mib=0.02"]
    local = run_sweep(root, *user, name="stage-local", cache=tmp_path / "local")
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-4000:]
    run = run_sweep(root, *user, "merge_stage_tasks=2", *LAUNCHER, name="stage-slurm", cache=tmp_path / "slurm")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    (array,) = re.findall(r"merge stage: submitted Slurm job array (\d+) \(2 tasks\)", output)
    assert "merge stage: 2 merged in one pass" in output
    (variants,) = re.findall(r"Submitted Slurm job array (\d+)", output)
    assert int(variants) > int(array)  # the stage's array ended before the variants' array was submitted
    tasks = merge_tasks(cluster, "wsm-stage-slurm-merge")
    assert sorted(tasks) == [f"{array}_0", f"{array}_1"]
    merges = files(tmp_path / "slurm" / "merges")
    assert len([f for f in merges if f.endswith(".safetensors")]) > 2 * 2  # each merge in several shards
    assert merges == files(tmp_path / "local" / "merges")  # the jobs reused the stage's merges: the same bytes
    columns = ["variant", "task", "metric", "value", "stderr", "status", "model_hash"]
    order = ["variant", "task", "metric"]
    pd.testing.assert_frame_equal(run.results()[columns].sort_values(order, ignore_index=True),
                                  local.results()[columns].sort_values(order, ignore_index=True), check_exact=True)


def merge_tasks(cluster, name: str) -> dict[str, dict[str, str]]:
    """The tasks of the merge stage's array (job name ``<launcher name>-merge``) by "<array>_<task>"."""
    return {key: job for key, job in cluster.jobs().items() if job["JobName"] == name}

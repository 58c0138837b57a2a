"""Sweeps that race, get killed or get refused: real processes on the micro study.

Two sweeps started at once on one cache give exactly the rows of one run; a training run killed
mid-way and resumed keeps its W&B history; a job refused for another eval suite writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers.sweep import MICRO, ROOT, run_sweep

pytestmark = pytest.mark.slow


def _command(root: Path, cache: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "wsm_exp", f"paths.sweeps={root}", f"paths.cache={cache}", f"sweep_name={name}",
            *MICRO, *extra]


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    keep = ["variant", "task", "metric", "value", "status"]
    return frame[keep].sort_values(keep[:3], ignore_index=True)


def test_two_sweeps_at_once_on_one_cache_give_the_rows_of_one_run(root, cache):
    single = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8,16", "logger=none",
                       name="single-twin", cache=cache, fresh_results_cache=True)
    assert single.returncode == 0, single.stderr[-3000:]
    shared = [f"paths.merges={root}/twin-merges", f"paths.scores={root}/twin-scores"]
    command = _command(root, cache, "twin", "+sweep=duration", "merge.quantity=2", "merge.duration=8,16",
                       "logger=none", *shared)
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out[-2000:] + err[-3000:]
    frame = pd.read_parquet(root / "twin" / "results.parquet")
    assert frame.groupby(["variant", "task", "metric"]).size().max() == 1  # nothing twice
    pd.testing.assert_frame_equal(_values(frame), _values(single.results()))
    said = "\n".join(out for out, _ in outputs)
    for variant in frame["variant"].unique():  # each variant computed by one process, reused by the other
        assert said.count(f"computed {variant}:") == 1, said[-3000:]
    assert not [p for p in (root / "twin-merges").iterdir() if p.name.startswith(".") and "tmp" in p.name]


def _history_steps(run_dir: Path) -> list[int]:
    wandb = Path(sys.executable).parent / "wandb"
    out = subprocess.run([str(wandb), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         check=True).stdout
    steps = []
    for line in out.splitlines():
        record = json.loads(line)
        if record.get("type") == "history":
            steps.append(int(record["history"]["item"]["_step"]))
    return steps


def test_a_terminated_training_keeps_its_wandb_history_and_continues_the_run(root):
    fresh_cache = root / "wb-cache"  # untrained: this sweep trains the micro study itself
    # a longer stage 1 than MICRO's (the later override wins), so the kill lands while it trains
    command = _command(root, fresh_cache, "wb", "merge.quantity=2", "train.switch_step=240")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wandb_dir = root / "wb" / "wandb"
    deadline = time.time() + 300
    while time.time() < deadline and not list(fresh_cache.rglob("stage1/step_*")):
        time.sleep(0.1)  # the first stage-1 checkpoint: training is under way and resumable
    os.kill(proc.pid, signal.SIGTERM)  # what `kill` and a Slurm preemption send
    proc.wait(timeout=120)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # nothing of the killed run is left
    before = sorted(wandb_dir.glob("offline-run-*-train-s0-*"))
    assert len(before) == 1, "the training run should exist when the kill lands"
    killed_steps = _history_steps(before[0])
    assert killed_steps, "the killed run logged steps before the kill"
    run = run_sweep(root, "merge.quantity=2", "train.switch_step=240", name="wb", cache=fresh_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    after = sorted(wandb_dir.glob("offline-run-*-train-s0-*"))
    assert before[0] in after and len(after) == 2  # the first part is kept, the rest appended under its id
    assert len({p.name[len("offline-run-YYYYmmdd_HHMMSS-"):] for p in after}) == 1  # one run id
    resumed = _history_steps(after[1])
    assert _history_steps(before[0]) == killed_steps  # history before the kill untouched
    assert max(resumed) > max(killed_steps) and min(resumed) <= max(killed_steps) + 1


def test_a_refused_job_writes_nothing(root, cache):
    first = run_sweep(root, "merge.quantity=2", "logger=none", name="refuse", cache=cache)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = {p.name: p.read_bytes() for p in (root / "refuse" / "jobs").glob("*.json")}
    results = (root / "refuse" / "results.parquet").read_bytes()
    refused = run_sweep(root, "merge.quantity=2", "logger=none", "eval.tasks=[wsm_heldout_bpb]", name="refuse",
                        cache=cache)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "eval.tasks" in said and "sweep_name=" in said
    assert {p.name: p.read_bytes() for p in (root / "refuse" / "jobs").glob("*.json")} == jobs
    assert (root / "refuse" / "results.parquet").read_bytes() == results
